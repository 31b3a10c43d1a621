"""Metrics, the health and metrics HTTP server (on `AiohttpSite`), and logging: used by every
layer above."""
