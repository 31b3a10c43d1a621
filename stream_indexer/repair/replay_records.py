"""Dead letters, repair path two, reading step: what `dlq replay` reads off a DLQ record.

The headers it trusts (`x-replay-count`, `x-dlq-failed-at`, `x-dlq-error-class`), the
headers a replayed record carries (the originals without `x-dlq-*`, plus the new count), and
the operator's filter. Pure functions of a record's key, value, headers and timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from stream_indexer.dlq.headers import ERROR_CLASS, FAILED_AT, strip_dlq_headers
from stream_indexer.dlq.recover import recover_listing_id

REPLAY_COUNT = "x-replay-count"

Headers = Sequence[tuple[str, bytes]]


def header(headers: Headers, name: str) -> bytes | None:
    """The last value of header `name` (case-insensitive), or None."""
    found: bytes | None = None
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            found = value
    return found


def replay_count(headers: Headers) -> int:
    """How often the record was replayed already (`x-replay-count`; absent or bad means 0)."""
    raw = header(headers, REPLAY_COUNT)
    if raw is None:
        return 0
    try:
        return max(0, int(raw.decode("ascii").strip()))
    except (UnicodeDecodeError, ValueError):
        return 0


def replay_headers(headers: Headers, count: int) -> list[tuple[str, bytes]]:
    """The original headers without `x-dlq-*` and old `x-replay-count`, plus the new count."""
    kept = [(k, v) for k, v in strip_dlq_headers(headers) if k.lower() != REPLAY_COUNT]
    return [*kept, (REPLAY_COUNT, str(count).encode("ascii"))]


def failed_at(headers: Headers, timestamp_ms: int | None) -> datetime | None:
    """When the record was dead-lettered: `x-dlq-failed-at`, else the DLQ record's timestamp."""
    raw = header(headers, FAILED_AT)
    if raw is not None:
        try:
            instant = datetime.fromisoformat(raw.decode("ascii").replace("Z", "+00:00"))
        except (UnicodeDecodeError, ValueError):
            instant = None
        if instant is not None:
            return instant if instant.utcoffset() is not None else instant.replace(tzinfo=UTC)
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def text(raw: bytes | None) -> str | None:
    """Header or key bytes as text for messages and comparisons (bad bytes replaced)."""
    return None if raw is None else raw.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which DLQ records to replay; unset fields match everything."""

    error_class: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    listing_id: int | None = None

    def matches(
        self, key: bytes | None, value: bytes | None, headers: Headers, timestamp_ms: int | None
    ) -> bool:
        if self.error_class is not None and text(header(headers, ERROR_CLASS)) != self.error_class:
            return False
        if self.since is not None or self.until is not None:
            at = failed_at(headers, timestamp_ms)
            if at is None:
                return False
            if self.since is not None and at < self.since:
                return False
            if self.until is not None and at >= self.until:
                return False
        return self.listing_id is None or recover_listing_id(key, value) == self.listing_id


__all__ = [
    "REPLAY_COUNT",
    "Headers",
    "ReplayFilter",
    "failed_at",
    "header",
    "replay_count",
    "replay_headers",
    "text",
]
