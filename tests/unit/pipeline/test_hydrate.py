"""Hydration of thin events against a fake pool: one query per batch, missing rows become
None, invalid rows poison, a database error is transient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import pytest

from stream_indexer.errors import SchemaInvalidError, SourceUnavailableError
from stream_indexer.models import Listing
from stream_indexer.pipeline.hydrate import SourceLoader
from stream_indexer.settings import SourceSettings

ROW = {
    "id": 1,
    "title": "Oak desk",
    "price": 80,
    "status": "active",
    "updated_at": "2025-01-01T00:00:00Z",
}


class FakePool:
    def __init__(self, rows: Sequence[tuple[int, str]] = (), error: BaseException | None = None):
        self.rows = list(rows)
        self.error = error
        self.queries: list[tuple[str, list[int]]] = []
        self.closed = False

    async def fetch(self, query: str, ids: list[int]) -> list[tuple[int, str]]:
        self.queries.append((query, ids))
        if self.error is not None:
            raise self.error
        return [row for row in self.rows if row[0] in ids]

    async def close(self) -> None:
        self.closed = True


class PoolFactory:
    """Stands in for `asyncpg.create_pool`: hands out `pool`, remembers each call."""

    def __init__(self) -> None:
        self.pool = FakePool()
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, dsn: str, **kwargs: Any) -> FakePool:
        self.calls.append({"dsn": dsn, **kwargs})
        return self.pool


async def started(loader: SourceLoader) -> SourceLoader:
    """`loader`, started (its pool from the monkeypatched factory)."""
    await loader.start()
    return loader


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> PoolFactory:
    factory = PoolFactory()
    monkeypatch.setattr(asyncpg, "create_pool", factory)
    return factory


async def test_one_query_per_batch_and_missing_rows_are_none(pools: PoolFactory) -> None:
    pool = pools.pool = FakePool([(1, orjson.dumps(ROW).decode())])
    loader = SourceLoader("postgresql://src", SourceSettings(), pool_max_size=3)
    await loader.start()
    found = await loader.load([1, 2])
    assert isinstance(found[1], Listing) and found[1].title == "Oak desk"
    assert found[2] is None
    assert len(pool.queries) == 1 and pool.queries[0][1] == [1, 2]
    assert pools.calls == [{"dsn": "postgresql://src", "min_size": 0, "max_size": 3}]
    await loader.stop()
    await loader.stop()
    assert pool.closed


async def test_a_row_that_breaks_the_contract_is_poison(pools: PoolFactory) -> None:
    pools.pool = FakePool([(5, orjson.dumps({**ROW, "id": 5, "price": -3}).decode())])
    found = await (await started(SourceLoader("dsn", SourceSettings()))).load([5])
    assert isinstance(found[5], SchemaInvalidError)
    assert "listing 5" in str(found[5])


@pytest.mark.parametrize("error", [OSError("reset"), asyncpg.PostgresError("boom")])
async def test_a_failing_query_is_transient(pools: PoolFactory, error: BaseException) -> None:
    pools.pool = FakePool(error=error)
    with pytest.raises(SourceUnavailableError, match="source query failed"):
        await (await started(SourceLoader("dsn", SourceSettings()))).load([1])


async def test_an_unreachable_database_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(dsn: str, **kwargs: Any) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(asyncpg, "create_pool", refuse)
    with pytest.raises(SourceUnavailableError, match="unreachable"):
        await SourceLoader("dsn", SourceSettings()).start()


async def test_table_and_column_names_are_quoted(pools: PoolFactory) -> None:
    pool = pools.pool
    source = SourceSettings(table="shop.listings", id_column="listing_id")
    await (await started(SourceLoader("dsn", source))).load([1])
    query = pool.queries[0][0]
    assert 'FROM "shop"."listings" AS t' in query
    assert '"listing_id" = ANY($1::bigint[])' in query
