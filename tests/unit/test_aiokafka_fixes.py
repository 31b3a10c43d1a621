"""aiokafka drops the fetched records of a paused partition (inside a reference cycle) and
fetches them again on resume; with the fixes they are kept for the resume, and what is
still dropped is freed by reference counting at once (no cycle collection needed)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from stream_indexer.aiokafka_fixes import free_discarded_fetches, keep_paused_fetches

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


def _aiokafkas_own(method: Any) -> Any:
    while hasattr(method, "__wrapped__"):
        method = method.__wrapped__
    return method


@pytest.mark.usefixtures("collector_off")
def test_without_the_fix_a_discarded_fetch_outlives_its_last_reference() -> None:
    records = _discard(_aiokafkas_own(fetcher.FetchResult.check_assignment))
    assert records() is not None  # held by its own record iterator's frame
    gc.collect()
    assert records() is None


@pytest.mark.usefixtures("collector_off")
def test_with_the_fix_it_is_freed_by_reference_counting() -> None:
    assert free_discarded_fetches()
    result, records = _paused_fetch()
    result._assignment.state_value(TP).position = 1  # sought elsewhere: still dropped
    assert fetcher.FetchResult.check_assignment(result, TP) is False
    assert result._partition_records is None
    del result
    assert records() is None


@pytest.mark.usefixtures("collector_off")
def test_records_a_partition_still_takes_are_left_alone() -> None:
    free_discarded_fetches()
    result, records = _paused_fetch()
    result._assignment.state_value(TP).paused = False
    taken = result.getall(2)
    assert [record.offset for record in taken] == [0, 1]
    assert result.has_more() and records() is not None
    assert [record.offset for record in result.getall()] == [2]


def test_aiokafka_alone_drops_what_a_paused_partition_fetched() -> None:
    result, _records = _paused_fetch()
    assert _aiokafkas_own(fetcher.FetchResult.check_assignment)(result, TP) is False
    assert not result.has_more()  # so the fetcher asks the broker for it again


def test_with_the_fix_a_paused_partition_keeps_its_fetch_for_the_resume() -> None:
    assert keep_paused_fetches()
    result, records = _paused_fetch()
    state = result._assignment.state_value(TP)
    state.paused = False
    assert [record.offset for record in result.getall(1)] == [0]
    state.paused = True
    assert result.getall() == []
    assert result.has_more() and records() is not None  # kept, so not fetched again
    state.paused = False
    assert [record.offset for record in result.getall()] == [1, 2]
    assert not result.has_more()


def test_a_kept_fetch_is_still_dropped_once_the_partition_moved() -> None:
    assert keep_paused_fetches()
    result, _records = _paused_fetch()
    result._assignment.state_value(TP).position = 2  # sought while paused
    assert result.getall() == []
    assert not result.has_more()
    result, _records = _paused_fetch()
    result._assignment.active = False  # revoked
    assert result.getall() == []
    assert not result.has_more()


def test_a_kept_fetch_holds_up_no_other_partitions_fetch() -> None:
    """aiokafka fetches nothing from a broker while one of its partitions holds records
    younger than `prefetch_backoff` that nobody took: a kept fetch is exempt."""
    assert keep_paused_fetches()
    result, _records = _paused_fetch()
    assert result.calculate_backoff() == 0
    result._assignment.state_value(TP).paused = False
    assert result.calculate_backoff() > 0  # aiokafka's own rule, for records about to be taken


async def test_resuming_wakes_a_getmany_that_waits() -> None:
    """A resume brings no fetch response, the only thing that wakes a waiting `getmany`;
    what the partition kept would otherwise wait for the call's timeout."""
    assert keep_paused_fetches()
    consumer: Any = AIOKafkaConsumer.__new__(AIOKafkaConsumer)
    resumed: list[TopicPartition] = []
    consumer._subscription = SimpleNamespace(resume=resumed.append)
    waiter = asyncio.get_running_loop().create_future()
    consumer._fetcher = SimpleNamespace(_fetch_waiters={waiter})
    consumer.resume(TP)
    assert resumed == [TP]
    assert waiter.done()


def test_applying_the_fixes_again_wraps_nothing_twice() -> None:
    assert keep_paused_fetches() and free_discarded_fetches()
    check, resume = fetcher.FetchResult.check_assignment, AIOKafkaConsumer.resume
    assert keep_paused_fetches() and free_discarded_fetches()
    assert fetcher.FetchResult.check_assignment is check
    assert AIOKafkaConsumer.resume is resume
