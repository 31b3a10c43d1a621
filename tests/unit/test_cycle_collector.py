"""Batches built inside `cycle_collector.paused()` are frozen out of the collector's walks,
only once the process turned it on, and what the freeze took along is reclaimed later."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from stream_indexer import cycle_collector


@pytest.fixture
def restore_collector() -> Iterator[None]:
    gc.collect()
    try:
        yield
    finally:
        cycle_collector.disable()
        gc.unfreeze()
        gc.enable()


class _Node:
    """A reference cycle of one (what a batch never makes; the freeze may take one along)."""

    def __init__(self) -> None:
        self.me: Any = self


class _Document:
    """A batch object (weak-referenceable, tracked by the collector, no cycle)."""


def _in_a_generation(objects: list[Any]) -> bool:
    """Whether any of `objects` is where collections walk (frozen ones are not)."""
    walked = {id(o) for o in gc.get_objects()}
    return any(id(o) in walked for o in objects)


@pytest.mark.usefixtures("restore_collector")
def test_off_until_the_process_turns_it_on() -> None:
    with cycle_collector.paused():
        assert gc.isenabled()
        batch = [_Document() for _ in range(100)]
    assert _in_a_generation(batch)


@pytest.mark.usefixtures("restore_collector")
def test_a_batch_is_made_with_the_collector_off_then_frozen() -> None:
    cycle_collector.enable()
    with cycle_collector.paused():
        assert not gc.isenabled()
        batch = [_Document() for _ in range(100)]
    assert gc.isenabled()
    assert not _in_a_generation(batch)
    first = weakref.ref(batch[0])
    del batch  # frozen objects are still freed by reference counting
    assert first() is None


@pytest.mark.usefixtures("restore_collector")
def test_a_failure_inside_still_turns_the_collector_back_on() -> None:
    cycle_collector.enable()
    with pytest.raises(RuntimeError), cycle_collector.paused():
        raise RuntimeError("a bug in the batch")
    assert gc.isenabled()


@pytest.mark.usefixtures("restore_collector")
def test_a_collector_someone_else_turned_off_stays_off() -> None:
    cycle_collector.enable()
    gc.disable()
    with cycle_collector.paused():
        pass
    assert not gc.isenabled()


@pytest.mark.usefixtures("restore_collector")
def test_a_frozen_cycle_waits_for_reclaim() -> None:
    cycle_collector.enable()
    with cycle_collector.paused():
        node = _Node()
    gone = weakref.ref(node)
    del node
    gc.collect()
    assert gone() is not None  # frozen: no collection walks it
    assert cycle_collector.reclaim() >= 1
    assert gone() is None


@pytest.mark.usefixtures("restore_collector")
async def test_reclaimed_periodically_until_stopped() -> None:
    cycle_collector.enable()
    reclaimed = asyncio.Event()
    with cycle_collector.paused():
        node = _Node()
    weakref.finalize(node, reclaimed.set)
    del node
    stopping = asyncio.Event()
    task = asyncio.create_task(cycle_collector.reclaim_periodically(stopping, interval_s=0.01))
    await asyncio.wait_for(reclaimed.wait(), 10)
    stopping.set()
    await asyncio.wait_for(task, 10)
