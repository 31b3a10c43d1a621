"""Source scan against real PostgreSQL: keyset pages, id lookups, versions, invalid rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import asyncpg
from support.source_table import create_source_table, delete_rows, upsert_rows

from stream_indexer.devtools.synthetic import listing_data
from stream_indexer.errors import SchemaInvalidError
from stream_indexer.models import Listing
from stream_indexer.pipeline.source_scan import SourceScanner
from stream_indexer.settings import SourceSettings

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_pages_cover_every_row_once_in_id_order_with_versions(pg_dsn: str) -> None:
    rng = random.Random(3)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await create_source_table(conn)
        await upsert_rows(conn, [(listing_data(rng, i, AT), 100 + i) for i in range(1, 58)])
        await delete_rows(conn, [7, 8])
        await conn.execute("UPDATE listings SET title = '' WHERE id = 9")
    finally:
        await conn.close()
    async with SourceScanner(pg_dsn, SourceSettings()) as scanner:
        seen: list[int] = []
        after = 0
        while page := await scanner.page(after, 10):
            seen += [row.listing_id for row in page]
            after = page[-1].listing_id
        assert seen == [i for i in range(1, 58) if i not in (7, 8)]
        rows = await scanner.rows([5, 7, 9])
        assert set(rows) == {5, 9}
        assert rows[5].version == 105 and isinstance(rows[5].listing, Listing)
        assert isinstance(rows[9].listing, SchemaInvalidError)
        assert await scanner.count() == 55
        sampled = await scanner.sample(100.0, 20)
        assert [row.listing_id for row in sampled] == seen[:20]


async def test_a_timestamp_version_column_counts_microseconds(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, title text, changed timestamptz)"
        )
        await conn.execute("INSERT INTO items VALUES (1, 't', '1970-01-01 00:00:01.5+00')")
    finally:
        await conn.close()
    source = SourceSettings(table="items", version_column="changed")
    async with SourceScanner(pg_dsn, source) as scanner:
        (row,) = await scanner.page(0, 10)
    assert row.version == 1_500_000
