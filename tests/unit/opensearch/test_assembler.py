"""Batches that are ready together share one `_bulk` request; results go back per batch."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry
from support.fake_bulk import FakeBulk

from stream_indexer.errors import SinkRequestAbandonedError
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.bulk import ItemOutcome, PendingWrite
from stream_indexer.opensearch.concurrency import ConcurrencyController
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import load_settings


def _writes(*ids: int) -> list[PendingWrite]:
    return [PendingWrite(i, 1, {"id": i, "version": 1}) for i in ids]


async def _assembler(
    fake: FakeBulk, *, max_docs: int = 100
) -> tuple[BulkAssembler, OpenSearchSink]:
    sink = OpenSearchSink(load_settings({"opensearch.hosts": fake.url, "opensearch.index": "l"}))
    await sink.start()
    assembler = BulkAssembler(
        sink, Metrics(CollectorRegistry()), max_in_flight=1, max_docs=max_docs, max_bytes=1 << 20
    )
    await assembler.start()
    return assembler, sink


async def test_ready_batches_share_one_request_and_get_their_own_results() -> None:
    async with FakeBulk() as fake:
        fake.script([201, 409, "mapper_parsing_exception", 429])
        assembler, sink = await _assembler(fake)
        try:
            first, second = await asyncio.gather(
                assembler.send(_writes(1, 2)), assembler.send(_writes(3, 4))
            )
        finally:
            await assembler.stop()
            await sink.stop()
        assert [request.ids for request in fake.requests] == [["1", "2", "3", "4"]]
    assert [r.outcome for r in first] == [ItemOutcome.WRITTEN, ItemOutcome.STALE]
    assert [r.outcome for r in second] == [ItemOutcome.POISON, ItemOutcome.RETRY]


async def test_a_group_never_exceeds_the_document_limit() -> None:
    async with FakeBulk() as fake:
        assembler, sink = await _assembler(fake, max_docs=4)
        try:
            await asyncio.gather(*(assembler.send(_writes(i, i + 100)) for i in range(1, 4)))
        finally:
            await assembler.stop()
            await sink.stop()
        assert [len(request.ids) for request in fake.requests] == [4, 2]


class _GatedSink:
    """Stands in for OpenSearchSink: every bulk waits for the test to open the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sizes: list[int] = []
        self.called = asyncio.Event()

    async def bulk(self, body: bytes, items: int) -> dict[str, object]:
        self.sizes.append(items)
        self.called.set()
        await self.gate.wait()
        return {"items": [{"index": {"status": 201}}] * items}


async def test_small_batches_wait_for_the_request_in_flight_instead_of_a_new_one() -> None:
    sink = _GatedSink()
    assembler = BulkAssembler(
        sink,  # type: ignore[arg-type]
        Metrics(CollectorRegistry()),
        max_in_flight=4,
        max_docs=100,
        max_bytes=1 << 20,
    )
    await assembler.start()
    try:
        first = asyncio.create_task(assembler.send(_writes(1, 2)))
        await sink.called.wait()
        later = [asyncio.create_task(assembler.send(_writes(i, i + 10))) for i in (3, 4)]
        for _ in range(20):  # event-loop turns: every chance to send them on their own
            await asyncio.sleep(0)
        assert sink.sizes == [2], "a small batch took a second slot while one was in flight"
        sink.gate.set()
        await asyncio.gather(first, *later)
        assert sink.sizes == [2, 4]
    finally:
        await assembler.stop()


async def test_a_gate_holds_every_request_and_batches_that_wait_go_out_together() -> None:
    sink = _GatedSink()
    sink.gate.set()  # the sink answers at once; the assembler's own gate holds
    held = asyncio.Event()
    opened = asyncio.Event()

    async def gate() -> None:
        held.set()
        await opened.wait()

    assembler = BulkAssembler(
        sink,  # type: ignore[arg-type]
        Metrics(CollectorRegistry()),
        max_in_flight=2,
        max_docs=100,
        max_bytes=1 << 20,
        gate=gate,
    )
    await assembler.start()
    try:
        first = asyncio.create_task(assembler.send(_writes(1, 2)))
        await held.wait()
        later = [asyncio.create_task(assembler.send(_writes(i, i + 10))) for i in (3, 4)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert sink.sizes == [], "a request went out while the gate held"
        opened.set()
        await asyncio.gather(first, *later)
        assert sink.sizes == [6]
    finally:
        await assembler.stop()


class _BlackholedSink:
    """A sink whose bulk requests are never answered (connections swallowed)."""

    def __init__(self) -> None:
        self.requests = 0
        self.sent = asyncio.Event()

    async def bulk(self, body: bytes, items: int) -> dict[str, object]:
        self.requests += 1
        self.sent.set()
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


async def test_requests_older_than_an_answering_probe_are_abandoned_and_free_their_slot() -> None:
    sink = _BlackholedSink()
    assembler = BulkAssembler(
        sink,  # type: ignore[arg-type]
        Metrics(CollectorRegistry()),
        max_in_flight=1,
        max_docs=100,
        max_bytes=1 << 20,
    )
    await assembler.start()
    try:
        stuck = asyncio.create_task(assembler.send(_writes(1)))
        await asyncio.wait_for(sink.sent.wait(), 5)
        assert assembler.abandon_stuck(time.monotonic() - 60) == 0  # sent after that probe
        assert assembler.abandon_stuck(time.monotonic()) == 1
        with pytest.raises(SinkRequestAbandonedError):
            await asyncio.wait_for(stuck, 5)
        sink.sent.clear()
        retry = asyncio.create_task(assembler.send(_writes(1)))
        await asyncio.wait_for(sink.sent.wait(), 5)  # the slot was released
        assert sink.requests == 2
        retry.cancel()
    finally:
        await assembler.stop()


async def test_send_needs_a_started_assembler() -> None:
    assembler = BulkAssembler(
        _GatedSink(),  # type: ignore[arg-type]
        Metrics(CollectorRegistry()),
        max_in_flight=1,
        max_docs=100,
        max_bytes=1 << 20,
    )
    with pytest.raises(RuntimeError, match="before start"):
        await assembler.send(_writes(1))
    async with assembler:
        pass
    with pytest.raises(RuntimeError, match="after stop"):
        await assembler.send(_writes(1))


async def test_a_concurrency_controller_sets_the_slots_and_hears_every_answer() -> None:
    sink = _GatedSink()
    metrics = Metrics(CollectorRegistry())
    controller = ConcurrencyController(min_limit=1, max_limit=4)  # starts at 1
    assembler = BulkAssembler(
        sink,  # type: ignore[arg-type]
        metrics,
        max_in_flight=4,
        max_docs=4,
        max_bytes=1 << 20,
        controller=controller,
    )
    assert metrics.registry.get_sample_value("stream_indexer_bulk_concurrency_limit") == 1
    await assembler.start()
    try:
        # three full requests' worth: a fixed limit of 4 would send them all at once
        sends = [
            asyncio.create_task(assembler.send(_writes(i, i + 10, i + 20, i + 30)))
            for i in (1, 2, 3)
        ]
        await sink.called.wait()
        for _ in range(20):
            await asyncio.sleep(0)
        assert sink.sizes == [4], "a second request went out past the learned limit of 1"
        sink.gate.set()
        await asyncio.gather(*sends)
        assert sink.sizes == [4, 4, 4]
    finally:
        await assembler.stop()
    assert controller.baseline is not None  # the answers reached the controller
