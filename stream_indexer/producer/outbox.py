"""Producer side, the durable path: write events to the `listing_events_outbox` table.

`insert_event(conn, event, topic=...)` runs inside the caller's own asyncpg transaction, so
the listing change and its event commit or roll back together; `stream-indexer outbox relay`
then publishes the row. `PoolOutbox` is the same insert on a pool, which
`ListingEventProducer` uses as its fallback when Kafka cannot take an event in time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from stream_indexer.models import ListingEvent
from stream_indexer.producer.events import encode_key, encode_value, validate_event

DEFAULT_TABLE = "listing_events_outbox"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def checked_table(table: str) -> str:
    """`table` if it is a plain (optionally schema-qualified) identifier; we splice it into SQL."""
    if not _IDENTIFIER.match(table):
        raise ValueError(f"{table!r} is not a plain SQL identifier")
    return table


def _insert_sql(table: str) -> str:
    return (
        f"INSERT INTO {checked_table(table)} "
        "(event_id, listing_id, version, topic, key, value) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
    )


async def insert_event(
    conn: asyncpg.Connection,
    event: ListingEvent | Mapping[str, Any],
    *,
    topic: str,
    table: str = DEFAULT_TABLE,
) -> int:
    """Validate `event` and insert it on `conn` (inside your transaction); return the row id.

    Insert after you update the listing row: the row lock orders concurrent changes of one
    listing, so outbox ids follow versions. Raises `InvalidEventError` before touching the
    database when the event breaks the contract.
    """
    ev = validate_event(event)
    row_id: int = await conn.fetchval(
        _insert_sql(table),
        ev.event_id,
        ev.listing_id,
        ev.version,
        topic,
        encode_key(ev.listing_id),
        encode_value(ev),
    )
    return row_id


class PoolOutbox:
    """The outbox as the fallback sink of `ListingEventProducer` (one transaction per event)."""

    def __init__(self, pool: asyncpg.Pool, *, table: str = DEFAULT_TABLE) -> None:
        self.pool = pool
        self._sql = _insert_sql(table)

    async def write(
        self,
        *,
        topic: str,
        listing_id: int,
        version: int,
        event_id: uuid.UUID,
        key: bytes,
        value: bytes,
    ) -> int:
        """Insert an already-encoded event; returns its outbox row id."""
        async with self.pool.acquire() as conn:
            row_id: int = await conn.fetchval(
                self._sql, event_id, listing_id, version, topic, key, value
            )
        return row_id


__all__ = ["DEFAULT_TABLE", "PoolOutbox", "checked_table", "insert_event"]
