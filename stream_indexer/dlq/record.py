"""Dead letters, step one: the record a poison Kafka message becomes before both DLQ stores get it.

One value type feeds the Postgres table (`table.py`) and the DLQ topic (`topic.py`), so the two
stores can never disagree about what failed, where it came from and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A source record that could not be indexed, with its bytes untouched and its failure.

    `key`, `value` and `headers` are exactly what was consumed (replay needs them bit for
    bit). `listing_id`, `action` and `data` are what could be recovered from them, None when
    nothing could. `attempts` counts how often this record was tried; `failed_at` is aware UTC.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    listing_id: int | None
    action: str | None
    data: dict[str, Any] | None
    error_class: str
    error_message: str
    attempts: int
    consumer_group: str
    failed_at: datetime
    #: the event version read from the value, None when it cannot be read (the table's
    #: `version`: the row resolves once its listing is indexed at or past it)
    version: int | None = None

    def __post_init__(self) -> None:
        # Both stores write failed_at as an instant; a naive datetime has no instant.
        if self.failed_at.utcoffset() is None:
            raise ValueError("DeadLetter.failed_at must be timezone-aware (UTC)")
        if self.attempts < 0:
            raise ValueError("DeadLetter.attempts must be >= 0")


__all__ = ["DeadLetter"]
