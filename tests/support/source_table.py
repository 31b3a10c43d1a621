"""A listings source table for reindex and verify tests: the row shape `Listing` reads back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

#: every `Listing` field as a column, plus the version reindex and verify read
SOURCE_TABLE_DDL = """
CREATE TABLE {table} (
    id bigint PRIMARY KEY, title text, price numeric, status text,
    updated_at timestamptz, created_at timestamptz, user_id bigint, category_id bigint,
    description text, condition text, currency text, location jsonb, city text, country text,
    attributes jsonb, images jsonb, views_count bigint, version bigint NOT NULL)
"""

_COLUMNS = (
    "id, title, price, status, updated_at, created_at, user_id, category_id, description, "
    "condition, currency, location, city, country, attributes, images, views_count, version"
)
_JSON_FIELDS = ("location", "attributes", "images")


async def create_source_table(conn: asyncpg.Connection, table: str = "listings") -> None:
    await conn.execute(SOURCE_TABLE_DDL.format(table=table))


def _row(listing: Mapping[str, Any], version: int) -> tuple[Any, ...]:
    def value(field: str) -> Any:
        raw = listing.get(field)
        if field in _JSON_FIELDS and raw is not None:
            return orjson.dumps(raw).decode()
        if field in ("updated_at", "created_at") and isinstance(raw, str):
            return datetime.fromisoformat(raw)
        return raw

    fields = [c.strip() for c in _COLUMNS.split(",")][:-1]
    return (*(value(f) for f in fields), version)


async def upsert_rows(
    conn: asyncpg.Connection,
    rows: Sequence[tuple[Mapping[str, Any], int]],
    table: str = "listings",
) -> None:
    """Write (listing, version) rows; an existing id is replaced only by a newer version."""
    placeholders = ", ".join(f"${i}" for i in range(1, 19))
    updates = ", ".join(f"{c.strip()} = EXCLUDED.{c.strip()}" for c in _COLUMNS.split(",")[1:])
    await conn.executemany(
        f"INSERT INTO {table} ({_COLUMNS}) VALUES ({placeholders}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE {table}.version < EXCLUDED.version",
        [_row(listing, version) for listing, version in rows],
    )


async def delete_rows(
    conn: asyncpg.Connection, listing_ids: Sequence[int], table: str = "listings"
) -> None:
    await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::bigint[])", list(listing_ids))
