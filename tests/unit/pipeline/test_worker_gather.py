"""Partition workers announce the batch they are lingering over or preparing, so the request
that goes out meanwhile waits for it instead of leaving it for the next request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.devtools.demo import plan_events
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.worker import PartitionWorker, WorkerContext
from stream_indexer.settings import load_settings


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class _Sink:
    """Answers every item as written; records the size of each request."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.answered = asyncio.Event()

    async def bulk(self, body: bytes, items: int) -> dict[str, object]:
        self.sizes.append(items)
        self.answered.set()
        return {"items": [{"index": {"status": 201}}] * items}


def _context(sink: _Sink) -> tuple[WorkerContext, BulkAssembler]:
    settings = load_settings({"batch.max_records": 2, "batch.linger_ms": 60_000})
    metrics = Metrics(CollectorRegistry())
    assembler = BulkAssembler(
        sink,  # type: ignore[arg-type]
        metrics,
        max_in_flight=1,
        max_docs=100,
        max_bytes=1 << 20,
    )
    ctx = WorkerContext(
        settings=settings,
        dead_letters=None,  # type: ignore[arg-type]  # no poison here
        metrics=metrics,
        loader=None,
        bulk_writer=BulkWriter(
            assembler=assembler,
            circuit=None,
            policy=RetryPolicy.forever(Backoff()),
            metrics=metrics,
            retry=settings.retry,
        ),
        group_id="g",
    )
    return ctx, assembler


async def _turns() -> None:
    for _ in range(20):  # every chance to send what is queued on its own
        await asyncio.sleep(0)


async def test_a_batch_still_lingering_joins_the_request_another_partition_starts() -> None:
    sink = _Sink()
    ctx, assembler = _context(sink)
    events = plan_events(3, listings=3, seed=5, poison_every=0).records
    slow, fast = PartitionWorker("t", 0, ctx), PartitionWorker("t", 1, ctx)
    await assembler.start()
    try:
        slow.start()
        fast.start()
        slow.submit([_Record("t", 0, 0, *events[0])])  # lingers: its batch is not full
        await asyncio.sleep(0)
        fast.submit([_Record("t", 1, i, *events[i]) for i in (1, 2)])  # full: ready now
        await _turns()
        assert sink.sizes == [], "the request left without the batch still lingering"
        slow.submit([_Record("t", 0, 1, *events[0])])  # the lingering batch fills
        await asyncio.wait_for(sink.answered.wait(), 5)
        assert sink.sizes == [3]
    finally:
        await slow.stop(5)
        await fast.stop(5)
        await assembler.stop()


async def test_a_partition_just_assigned_counts_as_on_its_way() -> None:
    """After an assignment the backlog reaches the partitions one fetch after another: the
    first request waits for the partitions whose first records are still being fetched."""
    sink = _Sink()
    ctx, assembler = _context(sink)
    events = plan_events(4, listings=4, seed=5, poison_every=0).records
    first, later = PartitionWorker("t", 0, ctx), PartitionWorker("t", 1, ctx)
    await assembler.start()
    try:
        first.start()
        later.start()
        await asyncio.sleep(0)
        first.submit([_Record("t", 0, i, *events[i]) for i in (0, 1)])
        await _turns()
        assert sink.sizes == [], "the first request left without the partition just assigned"
        later.submit([_Record("t", 1, i, *events[i + 2]) for i in (0, 1)])
        await asyncio.wait_for(sink.answered.wait(), 5)
        assert sink.sizes == [4]
    finally:
        await first.stop(5)
        await later.stop(5)
        await assembler.stop()
