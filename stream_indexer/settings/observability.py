"""Core settings, operations: the metrics and health endpoints, and logging."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stream_indexer.settings.base import Section


class MetricsSettings(Section):
    """The HTTP server for /metrics, /healthz and /readyz."""

    host: str = "0.0.0.0"
    port: int = Field(default=9108, ge=0, le=65535)
    enabled: bool = True
    stall_timeout_s: float = Field(
        default=300.0, gt=0, description="/healthz fails when behind and no commit for this long"
    )


class LogSettings(Section):
    """Log level and format (JSON for machines, console for people)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


__all__ = ["LogSettings", "MetricsSettings"]
