"""Metrics, the health and metrics HTTP server, and logging: used by every layer above."""
