"""A partition's buffer: pause and resume thresholds, batches by count and bytes, linger,
and a close that lets the worker finish what is left."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from stream_indexer.pipeline.buffer import PartitionBuffer
from stream_indexer.settings import load_settings


@dataclass
class Record:
    offset: int
    value: bytes = b"x" * 10
    key: bytes | None = None


def buffer(**batch: int) -> tuple[PartitionBuffer, Gauge]:
    settings = load_settings({f"batch.{name}": value for name, value in batch.items()})
    gauge = Gauge("queue", "records buffered", registry=CollectorRegistry())
    return PartitionBuffer(settings.batch, gauge), gauge


def records(first: int, count: int, size: int = 10) -> list[Record]:
    return [Record(offset, b"x" * size) for offset in range(first, first + count)]


def test_full_at_three_quarters_and_drained_at_half_of_the_record_bound() -> None:
    buf, gauge = buffer(buffer_max_records=100)
    buf.submit(records(0, 74))
    assert not buf.full and buf.room == 26
    buf.submit(records(74, 1))
    assert buf.full and gauge._value.get() == 75  # type: ignore[attr-defined]
    assert not buf.drained_enough
    buf.drop()
    assert buf.drained_enough and len(buf) == 0 and gauge._value.get() == 0  # type: ignore[attr-defined]


def test_full_by_bytes_too() -> None:
    buf, _ = buffer(buffer_max_records=1000, buffer_max_bytes=1024)
    buf.submit(records(0, 1, size=800))
    assert buf.full


async def test_a_batch_stops_at_the_count_and_at_the_byte_limit() -> None:
    buf, _ = buffer(max_records=3, max_bytes=1_000_000, linger_ms=0)
    buf.submit(records(0, 5))
    assert [r.offset for r, _s, _t in await buf.take_batch() or []] == [0, 1, 2]
    buf, _ = buffer(max_records=100, max_bytes=1024, linger_ms=0)
    buf.submit(records(0, 5, size=500))
    assert [r.offset for r, _s, _t in await buf.take_batch() or []] == [0, 1]


async def test_a_single_record_larger_than_the_byte_limit_still_makes_a_batch() -> None:
    buf, _ = buffer(max_records=100, max_bytes=1024, linger_ms=0)
    buf.submit(records(0, 2, size=5000))
    batch = await buf.take_batch()
    assert batch is not None and len(batch) == 1


async def test_a_partial_batch_waits_for_the_linger_then_goes() -> None:
    buf, _ = buffer(max_records=10, linger_ms=50)
    buf.submit(records(0, 2))
    take = asyncio.create_task(buf.take_batch())
    await asyncio.sleep(0)
    buf.submit(records(2, 8))  # fills the batch: no need to wait out the linger
    batch = await asyncio.wait_for(take, 5)
    assert batch is not None and len(batch) == 10


async def test_close_lets_the_rest_out_then_ends() -> None:
    buf, _ = buffer(max_records=10, linger_ms=60_000)
    buf.submit(records(0, 3))
    buf.close()
    batch = await asyncio.wait_for(buf.take_batch(), 5)  # no linger once closing
    assert batch is not None and len(batch) == 3
    assert await buf.take_batch() is None


async def test_a_full_buffer_goes_at_once_however_long_the_linger() -> None:
    """Its partition is paused: waiting could not add a record, only delay a backlog."""
    buf, _ = buffer(max_records=100, buffer_max_records=8, linger_ms=60_000)
    buf.submit(records(0, 6))  # 3/4 of the bound: full
    assert buf.full
    batch = await asyncio.wait_for(buf.take_batch(), 5)
    assert batch is not None and len(batch) == 6


async def test_has_records_waits_for_one_and_is_false_once_closed_and_empty() -> None:
    buf, _ = buffer()
    waiting = asyncio.create_task(buf.has_records())
    await asyncio.sleep(0)
    assert not waiting.done()
    buf.submit(records(0, 1))
    assert await asyncio.wait_for(waiting, 5)
    buf.drop()
    buf.close()
    assert not await buf.has_records()
