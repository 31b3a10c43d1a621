"""The resolver's buffer: `note()` never waits, overflow drops the oldest and counts it, a
table that is down is retried until it answers; only notes of listings with an open row are
sent (no server: a scripted pool)."""

from __future__ import annotations

import asyncio
from typing import Any

from stream_indexer.backoff import Backoff
from stream_indexer.dlq.resolver import DeadLetterResolver, Written


class ScriptedPool:
    """`fetch` fails with OSError until `up` is set; answers the open-listings probe from
    `open` (None: more open listings than any probe asks for); records what it was asked to
    resolve, and how many resolving statements it got."""

    def __init__(self, open_listings: set[int] | None = None) -> None:
        self.up = asyncio.Event()
        self.failed = asyncio.Event()
        self.failures = 0
        self.open = open_listings
        self.seen: list[Written] = []
        self.updates = 0

    async def fetch(self, _sql: str, *args: Any, **_options: Any) -> list[dict[str, Any]]:
        if not self.up.is_set():
            self.failures += 1
            self.failed.set()
            raise OSError("table down")
        if len(args) == 1:  # the probe: which listings have an open row
            (limit,) = args
            listings = range(limit) if self.open is None else sorted(self.open)[:limit]
            return [{"listing_id": listing} for listing in listings]
        ids, versions, stale = args
        self.updates += 1
        self.seen.extend(zip(ids, versions, stale, strict=True))
        return [{"resolution": "indexed"} for _ in ids]


async def test_overflow_drops_the_oldest_and_the_rest_is_written_once_the_table_is_back() -> None:
    pool = ScriptedPool()
    dropped: list[int] = []
    resolver = DeadLetterResolver(
        pool,
        backoff=Backoff(0.001, 2.0, 0.01),
        max_pending=3,
        batch_size=10,
        on_dropped=dropped.append,
    )
    resolver.note([(1, 1, False)])
    async with resolver:
        await pool.failed.wait()  # the first batch, (1, 1), is being retried
        resolver.note([(2, 1, False), (3, 1, False), (4, 1, True), (5, 2, False)])
        assert resolver.pending == 3 and resolver.dropped == 1 and dropped == [1]
        pool.up.set()
        await asyncio.wait_for(resolver.drained(), 5)
    assert pool.seen == [(1, 1, False), (3, 1, False), (4, 1, True), (5, 2, False)]
    assert resolver.resolved == {"indexed": 4}


async def test_stop_while_the_table_is_down_is_prompt_and_leaves_notes_unwritten() -> None:
    pool = ScriptedPool()
    resolver = DeadLetterResolver(pool, backoff=Backoff(5.0, 2.0, 5.0), stop_timeout_s=5.0)
    await resolver.start()
    resolver.note([(1, 1, False)])
    await pool.failed.wait()
    await asyncio.wait_for(resolver.stop(), 1.0)
    assert resolver.pending == 1 and not pool.seen


async def test_only_notes_of_listings_with_an_open_row_are_sent() -> None:
    pool = ScriptedPool(open_listings={3, 9})
    pool.up.set()
    resolver = DeadLetterResolver(pool, batch_size=10)
    async with resolver:
        resolver.note([(1, 1, False), (3, 2, False), (4, 1, True), (3, 5, True)])
        await asyncio.wait_for(resolver.drained(), 5)
    assert pool.seen == [(3, 2, False), (3, 5, True)]


async def test_no_open_row_sends_no_update() -> None:
    pool = ScriptedPool(open_listings=set())
    pool.up.set()
    resolver = DeadLetterResolver(pool, batch_size=2)
    async with resolver:
        resolver.note([(1, 1, False), (2, 1, False), (3, 1, True)])
        await asyncio.wait_for(resolver.drained(), 5)
    assert pool.updates == 0 and resolver.pending == 0 and not resolver.resolved


async def test_more_open_listings_than_the_probe_limit_sends_the_batch_whole() -> None:
    pool = ScriptedPool(open_listings={1, 2, 3})
    pool.up.set()
    resolver = DeadLetterResolver(pool, batch_size=10, probe_limit=2)
    async with resolver:
        resolver.note([(1, 1, False), (7, 1, False)])
        await asyncio.wait_for(resolver.drained(), 5)
    assert pool.seen == [(1, 1, False), (7, 1, False)]
