"""Shared test helpers: where the test servers come from (`stack_fixtures`)."""
