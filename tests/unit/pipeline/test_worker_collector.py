"""A partition worker builds its batch out of the cycle collector's walks, once the process
turned that on (`cycle_collector`): while the batch's request is in flight, neither its
events nor its documents sit in a collector generation."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from support.worker_fakes import AnsweringSink, Record, worker_context

from stream_indexer import cycle_collector
from stream_indexer.devtools.demo import plan_events
from stream_indexer.pipeline.worker import PartitionWorker


@pytest.fixture
def collector_on() -> Iterator[None]:
    cycle_collector.enable()
    try:
        yield
    finally:
        cycle_collector.disable()
        gc.unfreeze()


def _batch_objects(event_ids: set[str]) -> list[Any]:
    """The batch's event dicts and documents (both carry the event id) that collections
    would walk."""
    return [o for o in gc.get_objects() if type(o) is dict and str(o.get("event_id")) in event_ids]


async def _walked_during_the_request(seed: int) -> list[Any]:
    """What collections would walk of a batch of two events (own `seed`, own event ids)
    while its request is in flight."""
    sink = AnsweringSink()
    seen: list[Any] = []
    events = plan_events(2, listings=2, seed=seed, poison_every=0).records
    event_ids = {orjson.loads(value)["event_id"] for _key, value in events}
    sink.on_request = lambda: seen.extend(_batch_objects(event_ids))
    ctx, assembler = worker_context(sink)
    worker = PartitionWorker("t", 0, ctx)
    await assembler.start()
    try:
        worker.start()
        worker.submit([Record("t", 0, i, *events[i]) for i in (0, 1)])  # a full batch
        await asyncio.wait_for(sink.answered.wait(), 5)
    finally:
        await worker.stop(5)
        await assembler.stop()
    return seen


@pytest.mark.usefixtures("collector_on")
async def test_the_batch_in_flight_is_frozen() -> None:
    assert await _walked_during_the_request(seed=5) == []


async def test_without_it_the_collector_walks_the_batch() -> None:
    walked = await _walked_during_the_request(seed=6)
    assert len([o for o in walked if "occurred_at" in o]) == 2
    # documents too (a tombstone holds only atomic values, which the collector stops tracking)
    assert any("indexed_at" in o for o in walked)
