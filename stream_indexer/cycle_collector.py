"""Process tuning, core: keeps each batch's objects out of CPython's cycle collector walks.

Timed with `gc.callbacks` in the `run` process, the collector cost 2-3 µs per event (about a
tenth of the indexer's CPU) and found almost nothing to free: a batch's event dicts,
documents and writes form no reference cycles and are freed by reference counting when the
batch completes. The cost is the walking: a batch lives for a whole request, and every
young and middle-generation collection triggered meanwhile walks what it holds.

So a partition worker builds each batch inside `paused()`: the collector is off while the
batch's objects are made, and at the end everything alive is frozen (moved to the permanent
generation, which collections never walk; an O(1) list splice). Reference counting frees
frozen objects as usual. A reference cycle that the freeze took along and that becomes
garbage later waits for `reclaim()`, which `reclaim_periodically` runs once a minute
(unfreeze, full collection, freeze again: about 40 ms over the indexer's heap, the event
loop blocked meanwhile, so 0.07 % of a core). The one such cycle that held memory, aiokafka's
discarded fetch results, is broken at once by `aiokafka_fixes` (without that, peak RSS grew
by half).

Only the indexer process turns this on (`enable()`, from `app.gc_tuning.tune_gc`); anywhere
else (tests, library use) `paused()` changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator

#: how often frozen objects are handed back to the collector for one full collection
RECLAIM_INTERVAL_S = 60.0

_enabled = False


def enable() -> None:
    """Make `paused()` pause and freeze (idempotent)."""
    global _enabled
    _enabled = True


def disable() -> None:
    """Make `paused()` a no-op again (tests)."""
    global _enabled
    _enabled = False


def enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No collection while the block runs; what is alive at its end is frozen."""
    if not _enabled:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def reclaim() -> int:
    """One full collection over frozen objects too, then freeze what survives; the number
    of unreachable objects found."""
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found


async def reclaim_periodically(
    stopping: asyncio.Event, interval_s: float = RECLAIM_INTERVAL_S
) -> None:
    """`reclaim()` every `interval_s` while enabled, until `stopping` is set."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
        if _enabled and not stopping.is_set():
            reclaim()


__all__ = [
    "RECLAIM_INTERVAL_S",
    "disable",
    "enable",
    "enabled",
    "paused",
    "reclaim",
    "reclaim_periodically",
]
