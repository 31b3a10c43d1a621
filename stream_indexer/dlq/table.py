"""Dead letters, Postgres side: upsert into `opensearch_indexing_dlq`, the actionable view
(latest failure per listing and action, with an attempt count; DESIGN.md section 3).

Re-delivery must not change the result: writing a letter for a source record that the row
already counts (same topic and partition, offset not newer) leaves `attempts` alone, and an
older record never overwrites a newer failure. A failure of the same listing from a newer
record replaces the row's columns and adds its attempts. A row remembers one source record,
so this holds within a partition (a listing's events share one, keyed by listing id); the
same listing failing in two partitions can be counted twice on re-delivery. Rows without a
listing id are kept one per source offset. One statement per kind (with and without listing
id), rows passed as arrays through `unnest`.

`headers` is stored as a JSON array of `[name, base64(value)]` pairs in the original order,
so the bytes round-trip exactly (`decode_headers`). Text Postgres cannot hold (NUL, lone
surrogates) is escaped; `data` that jsonb cannot hold is stored as NULL (the raw `value`
bytes are always kept).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from stream_indexer.dlq.record import DeadLetter
from stream_indexer.errors import ConfigError, DeadLetterStoreError

STORE_NAME = "postgres"
UNKNOWN_ACTION = "unknown"
DEFAULT_TABLE = "opensearch_indexing_dlq"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Errors that mean "the store could not take it now" (as opposed to a bug in our code).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)

_COLUMNS = (
    "listing_id, action, data, attempts, last_error, created_at, last_attempt_at, "
    'topic, "partition", "offset", key, value, headers, error_class, consumer_group'
)
_UNNEST = (
    "unnest($1::bigint[], $2::text[], $3::jsonb[], $4::integer[], $5::text[], "
    "$6::timestamptz[], $7::text[], $8::integer[], $9::bigint[], $10::bytea[], "
    "$11::bytea[], $12::jsonb[], $13::text[], $14::text[]) WITH ORDINALITY AS "
    "u(listing_id, action, data, attempts, last_error, failed_at, topic, "
    '"partition", "offset", key, value, headers, error_class, consumer_group, ord)'
)
_SET_LATEST = """
    data = EXCLUDED.data,
    last_error = EXCLUDED.last_error,
    last_attempt_at = EXCLUDED.last_attempt_at,
    topic = EXCLUDED.topic,
    "partition" = EXCLUDED."partition",
    "offset" = EXCLUDED."offset",
    key = EXCLUDED.key,
    value = EXCLUDED.value,
    headers = EXCLUDED.headers,
    error_class = EXCLUDED.error_class,
    consumer_group = EXCLUDED.consumer_group"""

# Rows with a listing id. `letters` drops exact duplicates (same source record); `latest` is
# the newest letter per (listing_id, action) in log order (highest offset; a listing's events
# share a partition), carrying the attempts of all of them. On conflict,
# only letters the row does not count yet add their attempts: a letter counts as already
# seen when the row's source is the same topic and partition at the same or a later offset.
_UPSERT_BY_LISTING = f"""
WITH letters AS (
    SELECT DISTINCT ON (listing_id, action, topic, "partition", "offset") *
    FROM {_UNNEST}
    ORDER BY listing_id, action, topic, "partition", "offset", ord DESC
), latest AS (
    SELECT DISTINCT ON (listing_id, action) *,
           sum(attempts) OVER (PARTITION BY listing_id, action) AS total_attempts
    FROM letters
    ORDER BY listing_id, action, "offset" DESC, failed_at DESC, ord DESC
)
INSERT INTO {{table}} AS d ({_COLUMNS})
SELECT listing_id, action, data, total_attempts, last_error, failed_at, failed_at,
       topic, "partition", "offset", key, value, headers, error_class, consumer_group
FROM latest
ON CONFLICT (listing_id, action) DO UPDATE SET{_SET_LATEST},
    attempts = d.attempts + COALESCE((
        SELECT sum(l.attempts)::integer FROM letters AS l
        WHERE l.listing_id = d.listing_id AND l.action = d.action
          AND NOT (l.topic IS NOT DISTINCT FROM d.topic
                   AND l."partition" IS NOT DISTINCT FROM d."partition"
                   AND l."offset" <= d."offset")
    ), 0)
WHERE NOT (EXCLUDED.topic IS NOT DISTINCT FROM d.topic
           AND EXCLUDED."partition" IS NOT DISTINCT FROM d."partition"
           AND EXCLUDED."offset" < d."offset")
"""

# Rows without a listing id: one per source record, so a conflict is always a re-delivery.
_UPSERT_BY_OFFSET = f"""
WITH latest AS (
    SELECT DISTINCT ON (topic, "partition", "offset") *
    FROM {_UNNEST}
    ORDER BY topic, "partition", "offset", ord DESC
)
INSERT INTO {{table}} AS d ({_COLUMNS})
SELECT listing_id, action, data, attempts, last_error, failed_at, failed_at,
       topic, "partition", "offset", key, value, headers, error_class, consumer_group
FROM latest
ON CONFLICT (topic, "partition", "offset") WHERE listing_id IS NULL DO UPDATE SET{_SET_LATEST}
"""


def quote_table_name(name: str) -> str:
    """`name` (optionally `schema.table`) as a quoted identifier; ConfigError if it is not one."""
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.match(part) for part in parts):
        raise ConfigError(
            f"DLQ table name {name!r} is not a plain SQL identifier (letters, digits, _; "
            "optionally schema-qualified)"
        )
    return ".".join(f'"{part}"' for part in parts)


def clean_text(text: str) -> str:
    """Text Postgres can store: NUL and unencodable characters become backslash escapes."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe.replace("\x00", "\\x00")


def encode_data(data: dict[str, Any] | None) -> str | None:
    """`data` as jsonb text, or None when jsonb cannot hold it (NaN, NUL, lone surrogates)."""
    if data is None:
        return None
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError):
        return None
    if "\\u0000" in text:
        return None
    return text


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    """Headers as the `headers` column's JSON: `[[name, base64(value)], ...]`."""
    pairs = [[clean_text(name), base64.b64encode(value).decode("ascii")] for name, value in headers]
    return json.dumps(pairs)


def decode_headers(column: str | list[list[str]] | None) -> tuple[tuple[str, bytes], ...]:
    """The `headers` column (JSON text as asyncpg returns it, or parsed) back to Kafka headers."""
    if column is None:
        return ()
    pairs = json.loads(column) if isinstance(column, str) else column
    return tuple((str(name), base64.b64decode(value)) for name, value in pairs)


def _columns(letters: Sequence[DeadLetter]) -> list[list[Any]]:
    """The 14 arrays `unnest` takes, in `_UNNEST` order."""
    rows = [
        (
            letter.listing_id,
            clean_text(letter.action) if letter.action else UNKNOWN_ACTION,
            encode_data(letter.data),
            letter.attempts,
            clean_text(letter.error_message),
            letter.failed_at,
            clean_text(letter.topic),
            letter.partition,
            letter.offset,
            letter.key,
            letter.value,
            encode_headers(letter.headers),
            clean_text(letter.error_class),
            clean_text(letter.consumer_group),
        )
        for letter in letters
    ]
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresDeadLetterTable:
    """The DLQ table on `pool`; `write` is idempotent for re-delivered records."""

    store_name = STORE_NAME

    def __init__(
        self, pool: asyncpg.Pool, table: str = DEFAULT_TABLE, *, timeout: float | None = 30.0
    ) -> None:
        self._pool = pool
        self.table = table
        self._timeout = timeout
        quoted = quote_table_name(table)
        self._upsert_by_listing = _UPSERT_BY_LISTING.format(table=quoted)
        self._upsert_by_offset = _UPSERT_BY_OFFSET.format(table=quoted)

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        """Upsert `letters`; DeadLetterStoreError when Postgres cannot take them now."""
        if not letters:
            return
        with_listing = [letter for letter in letters if letter.listing_id is not None]
        without_listing = [letter for letter in letters if letter.listing_id is None]
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn:
                if with_listing:
                    await conn.execute(
                        self._upsert_by_listing, *_columns(with_listing), timeout=self._timeout
                    )
                if without_listing:
                    await conn.execute(
                        self._upsert_by_offset, *_columns(without_listing), timeout=self._timeout
                    )
        except DATABASE_ERRORS as exc:
            raise DeadLetterStoreError(
                f"DLQ store postgres (table {self.table}) failed: {type(exc).__name__}: {exc}"
            ) from exc


__all__ = [
    "DATABASE_ERRORS",
    "DEFAULT_TABLE",
    "UNKNOWN_ACTION",
    "PostgresDeadLetterTable",
    "clean_text",
    "decode_headers",
    "encode_data",
    "encode_headers",
    "quote_table_name",
]
