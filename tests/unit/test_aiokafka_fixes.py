"""aiokafka drops the fetched records of a paused partition inside a reference cycle; with
the fix, reference counting frees them at once (no cycle collection needed)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from stream_indexer.aiokafka_fixes import free_discarded_fetches

TP = TopicPartition("listings", 0)


class _PartitionState:
    """What a FetchResult reads of its partition's subscription state."""

    def __init__(self) -> None:
        self.paused = True
        self.position = 0

    def consumed_to(self, offset: int) -> None:
        self.position = offset


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _paused_fetch() -> tuple[Any, weakref.ref[Any]]:
    """A fetch result of three records for a partition that is paused since (the state
    aiokafka leaves a prefetched response in when flow control pauses its partition)."""
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    for offset in range(3):
        builder.append(offset, None, b"1", b'{"x": 1}' * 100, [])
    records = fetcher.PartitionRecords(
        TP, MemoryRecords(bytes(builder.build())), [], 0, None, None, True, 0
    )
    state = _PartitionState()
    assignment = SimpleNamespace(active=True, state_value=lambda tp: state)
    result = fetcher.FetchResult(TP, assignment=assignment, partition_records=records, backoff=0.1)
    return result, weakref.ref(records)


def _discard(check: Callable[[Any, Any], bool]) -> weakref.ref[Any]:
    result, records = _paused_fetch()
    assert check(result, TP) is False  # paused: aiokafka drops what it fetched
    assert result._partition_records is None
    del result
    return records


@pytest.mark.usefixtures("collector_off")
def test_without_the_fix_a_discarded_fetch_outlives_its_last_reference() -> None:
    original = getattr(
        fetcher.FetchResult.check_assignment, "__wrapped__", fetcher.FetchResult.check_assignment
    )
    records = _discard(original)
    assert records() is not None  # held by its own record iterator's frame
    gc.collect()
    assert records() is None


@pytest.mark.usefixtures("collector_off")
def test_with_the_fix_it_is_freed_by_reference_counting() -> None:
    assert free_discarded_fetches()
    records = _discard(fetcher.FetchResult.check_assignment)
    assert records() is None


def test_applying_the_fix_twice_wraps_once() -> None:
    assert free_discarded_fetches()
    once = fetcher.FetchResult.check_assignment
    assert free_discarded_fetches()
    assert fetcher.FetchResult.check_assignment is once


@pytest.mark.usefixtures("collector_off")
def test_records_a_partition_still_takes_are_left_alone() -> None:
    free_discarded_fetches()
    result, records = _paused_fetch()
    result._assignment.state_value(TP).paused = False
    taken = result.getall(2)
    assert [record.offset for record in taken] == [0, 1]
    assert result.has_more() and records() is not None
    assert [record.offset for record in result.getall()] == [2]
