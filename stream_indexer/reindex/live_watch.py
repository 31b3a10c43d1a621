"""Reindex, live watch: the live group read every probe interval, off the backfill's and the
catch-up's path. Each reading feeds the live gate (live traffic first: the backfill's pages
and the catch-up's bulk requests wait while the live group is behind) and the live-lag
gauge; a failed reading is logged and skipped, it never stops the rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from stream_indexer.reindex.offsets import LagProbe, total_lag
from stream_indexer.reindex.throttle import LiveGate, LiveProbe

log = logging.getLogger(__name__)


class LiveWatch:
    """`async with LiveWatch(...) as watch:` then `watch.gate` and `watch.latest_lag`."""

    def __init__(
        self,
        probe: LagProbe,
        live_group: str,
        gate: LiveGate,
        *,
        interval_s: float,
        on_lag: Callable[[int], None] = lambda _lag: None,
    ) -> None:
        self.probe = probe
        self.live_group = live_group
        self.gate = gate
        self.interval_s = interval_s
        self.on_lag = on_lag
        #: the live group's total lag at the latest reading, None when it failed
        self.latest_lag: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def read_once(self) -> None:
        try:
            ends = await self.probe.highwaters()
            committed = await self.probe.committed(self.live_group)
        except Exception as exc:  # a probe failing must not stop the rebuild
            log.warning("live group lag unavailable: %s", exc)
            self.latest_lag = None
            return
        lag = total_lag(ends, committed)
        self.gate.observe(
            LiveProbe(
                produced=sum(ends.values()),
                committed=sum(committed.values()),
                lag=lag,
                at=time.monotonic(),
            )
        )
        self.latest_lag = lag
        self.on_lag(lag)

    async def _run(self) -> None:
        while True:
            await self.read_once()
            await asyncio.sleep(self.interval_s)

    async def __aenter__(self) -> LiveWatch:
        self._task = asyncio.create_task(self._run(), name="reindex-live-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.gate.open.set()  # nothing may stay held by a watch that no longer reads


__all__ = ["LiveWatch"]
