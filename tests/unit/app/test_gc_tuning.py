"""The collector tuning the indexer process applies at start (see gc_tuning's docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator

import pytest

from stream_indexer.app.gc_tuning import GEN2_THRESHOLD, collect_by_the_clock, tune_gc


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
        else:
            gc.disable()


@pytest.mark.usefixtures("restore_gc")
def test_start_up_heap_is_frozen_and_full_collections_are_rare() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, GEN2_THRESHOLD)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_twice_changes_nothing_more() -> None:
    tune_gc()
    once = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == once


class _Cycle:
    """A reference cycle: only the collector can free it."""

    def __init__(self) -> None:
        self.me = self


def _freed_when_collected(*, survive_a_collection: bool = False) -> asyncio.Event:
    """An event set when a new reference cycle is freed; with `survive_a_collection` the
    cycle is in the oldest generation when it becomes garbage."""
    freed = asyncio.Event()
    cycle = _Cycle()
    weakref.finalize(cycle, freed.set)
    if survive_a_collection:
        gc.collect(1)  # it survives (it is referenced) and moves to the oldest generation
    del cycle
    return freed


@pytest.mark.usefixtures("restore_gc")
async def test_while_it_runs_cycles_are_freed_by_the_clock_not_by_counts() -> None:
    gc.enable()
    pacer = asyncio.create_task(collect_by_the_clock(interval_s=0.01, full_every=1_000))
    await asyncio.sleep(0)  # the task starts
    assert not gc.isenabled()
    try:
        await asyncio.wait_for(_freed_when_collected().wait(), 10)
    finally:
        pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacer
    assert gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
async def test_a_cycle_in_the_oldest_generation_waits_for_a_full_collection() -> None:
    pacer = asyncio.create_task(collect_by_the_clock(interval_s=0.01, full_every=5))
    await asyncio.sleep(0)
    try:
        await asyncio.wait_for(_freed_when_collected(survive_a_collection=True).wait(), 10)
    finally:
        pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacer


@pytest.mark.usefixtures("restore_gc")
async def test_collection_by_counts_is_back_only_when_the_last_pacer_stops() -> None:
    gc.enable()
    first = asyncio.create_task(collect_by_the_clock(interval_s=3600))
    second = asyncio.create_task(collect_by_the_clock(interval_s=3600))
    await asyncio.sleep(0)
    for pacer, enabled_after in ((first, False), (second, True)):
        pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacer
        assert gc.isenabled() is enabled_after


@pytest.mark.usefixtures("restore_gc")
async def test_a_process_that_had_collection_off_keeps_it_off() -> None:
    gc.disable()
    pacer = asyncio.create_task(collect_by_the_clock(interval_s=3600))
    await asyncio.sleep(0)
    pacer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pacer
    assert not gc.isenabled()
