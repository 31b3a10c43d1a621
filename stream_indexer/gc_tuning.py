"""Process tuning: garbage-collector settings for the long-running indexing loop.

Every event allocates a few dozen container objects (the pydantic models, their dicts and
values) and almost none of them is part of a reference cycle, so reference counting frees
them. With CPython's default generation-0 threshold (700 allocations) a collection runs
every couple of dozen events, and the older generations, which hold every buffered record,
are walked again and again: profiled, that was about a third of the indexer's CPU. So what
start-up allocated (modules, classes, settings; never garbage) is frozen out of the
collector's view, and generation 0 is collected every `GEN0_THRESHOLD` allocations. Cycles
are still collected, only in larger steps.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze the start-up heap and raise the generation-0 threshold (idempotent)."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(_gen0, GEN0_THRESHOLD), gen1, gen2)


__all__ = ["GEN0_THRESHOLD", "tune_gc"]
