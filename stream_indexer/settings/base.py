"""Core settings, shared ground: the environment prefix and the base every section extends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "STREAM_INDEXER_"
MIB = 1024 * 1024


class Section(BaseModel):
    """One settings section (`KAFKA__*`, ...): an unknown field is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


def split_csv(value: Any) -> Any:
    """`a, b,c` from the environment -> `["a", "b", "c"]` (lists pass through)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


__all__ = ["ENV_PREFIX", "MIB", "Section", "split_csv"]
