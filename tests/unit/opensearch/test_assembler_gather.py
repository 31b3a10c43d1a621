"""A request waits for the batches announced before it goes (group commit under a backlog),
never for ones announced later, and never longer than `GATHER_MAX_S`."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch import assembler as assembler_module
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.bulk import PendingWrite


class _Sink:
    """Stands in for OpenSearchSink: answers every item as written, records request sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def bulk(self, body: bytes, items: int) -> dict[str, object]:
        self.sizes.append(items)
        return {"items": [{"index": {"status": 201}}] * items}


def _writes(*ids: int) -> list[PendingWrite]:
    return [PendingWrite(i, 1, {"id": i, "version": 1}) for i in ids]


async def _turns(n: int = 20) -> None:
    """Event-loop turns: every chance for the assembler to send what it has."""
    for _ in range(n):
        await asyncio.sleep(0)


async def _started(sink: _Sink, *, max_docs: int = 100) -> BulkAssembler:
    assembler = BulkAssembler(
        sink,  # type: ignore[arg-type]
        Metrics(CollectorRegistry()),
        max_in_flight=1,
        max_docs=max_docs,
        max_bytes=1 << 20,
    )
    await assembler.start()
    return assembler


async def test_a_request_waits_for_a_batch_announced_before_it_goes() -> None:
    sink = _Sink()
    assembler = await _started(sink)
    try:
        number = assembler.announce()
        first = asyncio.create_task(assembler.send(_writes(1, 2)))
        await _turns()
        assert sink.sizes == [], "the request left without the announced batch"
        second = asyncio.create_task(assembler.send(_writes(3)))
        assembler.withdraw(number)
        await asyncio.gather(first, second)
        assert sink.sizes == [3]
    finally:
        await assembler.stop()


async def test_a_batch_announced_while_the_request_waits_is_not_awaited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(assembler_module, "GATHER_MAX_S", 60.0)
    sink = _Sink()
    assembler = await _started(sink)
    try:
        early = assembler.announce()
        first = asyncio.create_task(assembler.send(_writes(1)))
        await _turns()
        late = assembler.announce()  # a trickle of new batches must not hold the request
        assembler.withdraw(early)  # needed no request after all
        await asyncio.wait_for(first, 5)
        assert sink.sizes == [1]
        assembler.withdraw(late)
        assembler.withdraw(late)  # idempotent
    finally:
        await assembler.stop()


async def test_a_full_request_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assembler_module, "GATHER_MAX_S", 60.0)
    sink = _Sink()
    assembler = await _started(sink, max_docs=2)
    try:
        assembler.announce()
        await asyncio.wait_for(assembler.send(_writes(1, 2)), 5)
        assert sink.sizes == [2]
    finally:
        await assembler.stop()


async def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that never comes (its hydration waits for a source that is down) holds the
    request only `GATHER_MAX_S`."""
    monkeypatch.setattr(assembler_module, "GATHER_MAX_S", 0.05)
    sink = _Sink()
    assembler = await _started(sink)
    try:
        assembler.announce()
        await asyncio.wait_for(assembler.send(_writes(1)), 5)
        assert sink.sizes == [1]
    finally:
        await assembler.stop()


async def test_a_batch_that_outlived_one_wait_holds_no_later_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(assembler_module, "GATHER_MAX_S", 0.05)
    sink = _Sink()
    assembler = await _started(sink)
    try:
        assembler.announce()  # stuck for good
        await asyncio.wait_for(assembler.send(_writes(1)), 5)
        monkeypatch.setattr(assembler_module, "GATHER_MAX_S", 60.0)
        await asyncio.wait_for(assembler.send(_writes(2)), 5)
        assert sink.sizes == [1, 1]
    finally:
        await assembler.stop()
