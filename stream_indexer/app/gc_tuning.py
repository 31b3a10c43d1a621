"""Process tuning: garbage-collector settings for the long-running indexing loop.

Every event allocates a few dozen container objects and nearly all of them are freed by
reference counting; what costs is the cycle collector walking them while they are alive.
So the start-up heap (modules, classes, settings) is frozen out of the collector's view, a
full collection runs after `GEN2_THRESHOLD` middle-generation collections instead of 10,
and each batch is built with the collector paused and then frozen (`cycle_collector`).

That last part is safe for memory only with `aiokafka_fixes`: without it, batch freezing
raised peak RSS by 70-90 MiB, all of it aiokafka's discarded fetches, reference cycles each
holding its fetched bytes that young collections used to free promptly (most likely also
why a higher generation-0 threshold and a collection by the clock grew memory before).
"""

from __future__ import annotations

import gc

from stream_indexer import cycle_collector
from stream_indexer.aiokafka_fixes import free_discarded_fetches

GEN2_THRESHOLD = 100


def tune_gc() -> None:
    """Freeze the start-up heap, make full collections rare, keep batches out of the
    collector's walks (idempotent)."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, max(gen2, GEN2_THRESHOLD))
    if free_discarded_fetches():
        cycle_collector.enable()


__all__ = ["GEN2_THRESHOLD", "tune_gc"]
