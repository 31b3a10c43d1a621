"""Partition workers announce the batch they are lingering over or preparing, so the request
that goes out meanwhile waits for it instead of leaving it for the next request."""

from __future__ import annotations

import asyncio

from support.worker_fakes import AnsweringSink, Record, worker_context

from stream_indexer.devtools.demo import plan_events
from stream_indexer.pipeline.worker import PartitionWorker


async def _turns() -> None:
    for _ in range(20):  # every chance to send what is queued on its own
        await asyncio.sleep(0)


async def test_a_batch_still_lingering_joins_the_request_another_partition_starts() -> None:
    sink = AnsweringSink()
    ctx, assembler = worker_context(sink)
    events = plan_events(3, listings=3, seed=5, poison_every=0).records
    slow, fast = PartitionWorker("t", 0, ctx), PartitionWorker("t", 1, ctx)
    await assembler.start()
    try:
        slow.start()
        fast.start()
        slow.submit([Record("t", 0, 0, *events[0])])  # lingers: its batch is not full
        await asyncio.sleep(0)
        fast.submit([Record("t", 1, i, *events[i]) for i in (1, 2)])  # full: ready now
        await _turns()
        assert sink.sizes == [], "the request left without the batch still lingering"
        slow.submit([Record("t", 0, 1, *events[0])])  # the lingering batch fills
        await asyncio.wait_for(sink.answered.wait(), 5)
        assert sink.sizes == [3]
    finally:
        await slow.stop(5)
        await fast.stop(5)
        await assembler.stop()


async def test_a_partition_just_assigned_counts_as_on_its_way() -> None:
    """After an assignment the backlog reaches the partitions one fetch after another: the
    first request waits for the partitions whose first records are still being fetched."""
    sink = AnsweringSink()
    ctx, assembler = worker_context(sink)
    events = plan_events(4, listings=4, seed=5, poison_every=0).records
    first, later = PartitionWorker("t", 0, ctx), PartitionWorker("t", 1, ctx)
    await assembler.start()
    try:
        first.start()
        later.start()
        await asyncio.sleep(0)
        first.submit([Record("t", 0, i, *events[i]) for i in (0, 1)])
        await _turns()
        assert sink.sizes == [], "the first request left without the partition just assigned"
        later.submit([Record("t", 1, i, *events[i + 2]) for i in (0, 1)])
        await asyncio.wait_for(sink.answered.wait(), 5)
        assert sink.sizes == [4]
    finally:
        await first.stop(5)
        await later.stop(5)
        await assembler.stop()
