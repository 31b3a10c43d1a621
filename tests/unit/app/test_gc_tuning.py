"""The collector tuning the indexer process applies at start (see gc_tuning's docstring)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stream_indexer import cycle_collector
from stream_indexer.app.gc_tuning import GEN2_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        cycle_collector.disable()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_start_up_heap_is_frozen_and_full_collections_are_rare() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, GEN2_THRESHOLD)


@pytest.mark.usefixtures("restore_gc")
def test_batches_are_kept_out_of_the_collector_walks_in_the_indexer_process() -> None:
    assert not cycle_collector.enabled()
    tune_gc()
    assert cycle_collector.enabled()


@pytest.mark.usefixtures("restore_gc")
def test_tuning_twice_changes_nothing_more() -> None:
    tune_gc()
    once = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == once
