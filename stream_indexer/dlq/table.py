"""Dead letters, Postgres side: upsert into `opensearch_indexing_dlq`, the actionable view
(latest failure per listing and action, with an attempt count; docs/contract.md section 3).

Re-delivery must not change the result: writing a letter for a source record that the row
already counts (same topic and partition, offset not newer) leaves `attempts` alone, and an
older record never overwrites a newer failure. A failure of the same listing from a newer
record replaces the row's columns and adds its attempts. A row remembers one source record,
so this holds within a partition (a listing's events share one, keyed by listing id); the
same listing failing in two partitions can be counted twice on re-delivery. Rows without a
listing id are kept one per source offset. One statement per kind (with and without listing
id), rows passed as arrays through `unnest`.

A resolved row (migration 000004, `resolver.py`) is history: a new failure of its listing
reopens it as a new problem (attempts, `created_at` and `replay_count` start again), while a
re-delivery of the record it already holds leaves it resolved. Any new failure clears
`replayed_at`: the replayed copy, if any, is no longer awaited.

`headers` is stored as a JSON array of `[name, base64(value)]` pairs in the original order,
so the bytes round-trip exactly (`decode_headers`). Text Postgres cannot hold (NUL, lone
surrogates) is escaped; `data` that jsonb cannot hold is stored as NULL (the raw `value`
bytes are always kept, up to `table_max_value_bytes`, with their size and SHA-256).

A batch the server rejects for its data (SQLSTATE 22xxx/54xxx, `degrade.postgres_verdict`)
is written again one letter at a time, each rejected letter one degradation level further
(`degrade.table_letter`) until it fits; it is never retried as it was. When the server is
unavailable, `DeadLetterStoreError.unacknowledged` names the letters not written yet.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from stream_indexer.dlq.degrade import (
    MAX_TABLE_LEVEL,
    Verdict,
    postgres_verdict,
    stored_value,
    table_letter,
    table_value_cap,
)
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.errors import ConfigError, DeadLetterStoreError

log = logging.getLogger(__name__)

STORE_NAME = "postgres"
UNKNOWN_ACTION = "unknown"
DEFAULT_TABLE = "opensearch_indexing_dlq"
#: default hard cap on the value bytes one row keeps (`dlq.table_max_value_bytes`)
DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024
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
    'topic, "partition", "offset", key, value, headers, error_class, consumer_group, '
    "value_size, value_sha256, value_truncated, version"
)
_UNNEST = (
    "unnest($1::bigint[], $2::text[], $3::jsonb[], $4::integer[], $5::text[], "
    "$6::timestamptz[], $7::text[], $8::integer[], $9::bigint[], $10::bytea[], "
    "$11::bytea[], $12::jsonb[], $13::text[], $14::text[], $15::bigint[], $16::text[], "
    "$17::boolean[], $18::bigint[]) WITH ORDINALITY AS "
    "u(listing_id, action, data, attempts, last_error, failed_at, topic, "
    '"partition", "offset", key, value, headers, error_class, consumer_group, '
    "value_size, value_sha256, value_truncated, version, ord)"
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
    consumer_group = EXCLUDED.consumer_group,
    value_size = EXCLUDED.value_size,
    value_sha256 = EXCLUDED.value_sha256,
    value_truncated = EXCLUDED.value_truncated,
    version = EXCLUDED.version,
    replayed_at = NULL"""

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
       topic, "partition", "offset", key, value, headers, error_class, consumer_group,
       value_size, value_sha256, value_truncated, version
FROM latest
ON CONFLICT (listing_id, action) DO UPDATE SET{_SET_LATEST},
    attempts = CASE WHEN d.resolved_at IS NOT NULL THEN EXCLUDED.attempts
                    ELSE d.attempts + COALESCE((
        SELECT sum(l.attempts)::integer FROM letters AS l
        WHERE l.listing_id = d.listing_id AND l.action = d.action
          AND NOT (l.topic IS NOT DISTINCT FROM d.topic
                   AND l."partition" IS NOT DISTINCT FROM d."partition"
                   AND l."offset" <= d."offset")
    ), 0) END,
    created_at = CASE WHEN d.resolved_at IS NOT NULL THEN EXCLUDED.created_at
                      ELSE d.created_at END,
    replay_count = CASE WHEN d.resolved_at IS NOT NULL THEN 0 ELSE d.replay_count END,
    resolved_at = NULL,
    resolution = NULL
WHERE NOT (EXCLUDED.topic IS NOT DISTINCT FROM d.topic
           AND EXCLUDED."partition" IS NOT DISTINCT FROM d."partition"
           AND (EXCLUDED."offset" < d."offset"
                OR (EXCLUDED."offset" = d."offset" AND d.resolved_at IS NOT NULL)))
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
       topic, "partition", "offset", key, value, headers, error_class, consumer_group,
       value_size, value_sha256, value_truncated, version
FROM latest
ON CONFLICT (topic, "partition", "offset") WHERE listing_id IS NULL DO UPDATE SET{_SET_LATEST}
WHERE d.resolved_at IS NULL
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


def _columns(letters: Sequence[DeadLetter], max_value_bytes: int) -> list[list[Any]]:
    """The 18 arrays `unnest` takes, in `_UNNEST` order."""
    rows = []
    for letter in letters:
        value = stored_value(letter.value, max_value_bytes)
        rows.append(
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
                value.value,
                encode_headers(letter.headers),
                clean_text(letter.error_class),
                clean_text(letter.consumer_group),
                value.size,
                value.sha256,
                value.truncated,
                letter.version,
            )
        )
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresDeadLetterTable:
    """The DLQ table on `pool`; `write` is idempotent for re-delivered records."""

    store_name = STORE_NAME

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str = DEFAULT_TABLE,
        *,
        timeout: float | None = 30.0,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        on_degraded: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self.table = table
        self._timeout = timeout
        self.max_value_bytes = max_value_bytes
        #: called once per degradation step of a letter (a metric counts them)
        self._on_degraded = on_degraded
        quoted = quote_table_name(table)
        self._upsert_by_listing = _UPSERT_BY_LISTING.format(table=quoted)
        self._upsert_by_offset = _UPSERT_BY_OFFSET.format(table=quoted)

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        """Upsert `letters`; DeadLetterStoreError when Postgres cannot take them now.

        A letter Postgres rejects is degraded until it fits, never retried as is; the
        error's `unacknowledged` lists the positions not written when the store failed.
        """
        if not letters:
            return
        done: set[int] = set()
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn:
                try:
                    await self._upsert(conn, list(enumerate(letters)), done)
                except DATABASE_ERRORS as exc:
                    if postgres_verdict(exc) is not Verdict.REJECTED:
                        raise
                    await self._one_by_one(conn, letters, done)
        except DATABASE_ERRORS as exc:
            raise DeadLetterStoreError(
                f"DLQ store postgres (table {self.table}) failed: {type(exc).__name__}: {exc}",
                unacknowledged=tuple(i for i in range(len(letters)) if i not in done),
            ) from exc

    async def _upsert(
        self, conn: Any, indexed: list[tuple[int, DeadLetter]], done: set[int], level: int = 0
    ) -> None:
        """One statement per kind of row; adds the positions written to `done`."""
        cap = table_value_cap(level, self.max_value_bytes)
        for statement, wanted in (
            (self._upsert_by_listing, True),
            (self._upsert_by_offset, False),
        ):
            part = [
                (i, letter)
                for i, letter in indexed
                if i not in done and (letter.listing_id is not None) is wanted
            ]
            if part:
                rows = [table_letter(letter, level) for _i, letter in part]
                await conn.execute(statement, *_columns(rows, cap), timeout=self._timeout)
                done.update(i for i, _letter in part)

    async def _one_by_one(self, conn: Any, letters: Sequence[DeadLetter], done: set[int]) -> None:
        """The batch was rejected for some letter's data: find it, degrade only that one."""
        for i, letter in enumerate(letters):
            if i in done:
                continue
            level = 0
            while True:
                try:
                    await self._upsert(conn, [(i, letter)], done, level)
                    break
                except DATABASE_ERRORS as exc:
                    if postgres_verdict(exc) is not Verdict.REJECTED or level >= MAX_TABLE_LEVEL:
                        raise
                    level += 1
                    if self._on_degraded is not None:
                        self._on_degraded()
                    log.warning(
                        "DLQ table rejected a dead letter, storing it degraded (level %d): %s",
                        level,
                        exc,
                        extra={
                            "topic": letter.topic,
                            "partition": letter.partition,
                            "offset": letter.offset,
                        },
                    )


__all__ = [
    "DATABASE_ERRORS",
    "DEFAULT_MAX_VALUE_BYTES",
    "DEFAULT_TABLE",
    "UNKNOWN_ACTION",
    "PostgresDeadLetterTable",
    "clean_text",
    "decode_headers",
    "encode_data",
    "encode_headers",
    "quote_table_name",
]
