"""The collector tuning the indexer process applies at start (see gc_tuning's docstring)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from stream_indexer.app.gc_tuning import (
    GEN1_THRESHOLD,
    GEN2_THRESHOLD,
    collect_periodically,
    tune_gc,
)


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()


@pytest.mark.usefixtures("restore_gc")
def test_start_up_heap_is_frozen_and_older_collections_are_rare() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, GEN1_THRESHOLD, GEN2_THRESHOLD)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_twice_changes_nothing_more() -> None:
    tune_gc()
    once = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == once


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


@pytest.mark.usefixtures("restore_gc")
async def test_a_cycle_is_freed_by_the_clock_whatever_the_thresholds() -> None:
    gc.disable()  # no collection by allocation counts at all
    freed = asyncio.Event()
    node = _Node()
    weakref.finalize(node, freed.set)
    del node
    stopping = asyncio.Event()
    task = asyncio.create_task(collect_periodically(stopping, interval_s=0.01))
    try:
        await asyncio.wait_for(freed.wait(), 10)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)


async def test_stops_when_asked() -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(collect_periodically(stopping, interval_s=3600))
    stopping.set()
    await asyncio.wait_for(task, 10)
