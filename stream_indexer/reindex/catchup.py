"""Reindex, catch-up: the indexer service itself, in its own consumer group, writing the new index.

The catch-up group (`<group>.reindex.<run id>`; `<group>.rollback.<run id>` for a rollback)
starts from the offsets the live group had committed before the backfill read its first row
(committed for it beforehand, see `offsets.py`), and from then on its own commits make it
resumable. It is the pipeline unchanged (`IndexerService`: decode, coalesce, hydrate,
versioned bulk, dead letters, commits) with four settings overridden: its group, the bulk
target (the new physical index, which no alias points to yet), no index creation, and its
bulk requests: `REINDEX__CATCHUP_IN_FLIGHT` in flight (2 by default) of one batch each,
never partitions' batches combined into one larger request. Live traffic first: a live
pod's bulk queues behind at most two catch-up batches, as behind one backfill page; two,
not one, so that the server is not left idle while the next request is being built (with
one, a catch-up on a loaded machine fell further behind the live stream instead of
catching up).

Poison records: the live group dead-letters every record it cannot index, so the catch-up
group would store each one a second time. It therefore stores only the rejections the new
index can make that the live one cannot: when the two mappings differ, `mapping_rejected`
letters (labelled with the catch-up group) are kept and every other class (undecodable,
schema-invalid, source-row-rejected, which do not depend on the index) is dropped; when the
mappings are equal, nothing is stored. Dropped letters are still counted in the catch-up's
metrics.

Live traffic first: with a live gate (a reindex's catch-up, not a rollback's replay), each of
its bulk requests waits while the live group is behind, as the backfill's pages do.

It is done catching up when its lag is within `REINDEX__CATCHUP_MAX_LAG` records of the
live group's own lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from stream_indexer.app.service import IndexerService
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.errors import ReindexError
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.observability.metrics import Metrics
from stream_indexer.reindex.offsets import LagProbe
from stream_indexer.reindex.throttle import LiveGate
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)

#: the only dead letters a catch-up group stores when the new mapping differs
NEW_MAPPING_CLASSES = frozenset({"mapping_rejected"})


def letter_filter(mappings_differ: bool) -> Callable[[DeadLetter], bool]:
    """Which of the catch-up group's dead letters to store (see the module doc)."""
    if not mappings_differ:
        return lambda _letter: False
    return lambda letter: letter.error_class in NEW_MAPPING_CLASSES


def catchup_settings(settings: Settings, group_id: str) -> Settings:
    """The live settings with the catch-up group's overrides."""
    copy = settings.model_copy(deep=True)
    copy.kafka.group_id = group_id
    copy.kafka.auto_offset_reset = "earliest"
    copy.opensearch.create_index = False
    # live traffic first: a live bulk queues behind fewer and smaller catch-up requests
    # (one batch each: partitions' batches are not combined into one larger request)
    copy.opensearch.max_in_flight_bulks = settings.reindex.catchup_in_flight
    copy.opensearch.bulk_max_docs = min(copy.opensearch.bulk_max_docs, copy.batch.max_records)
    copy.metrics.enabled = False
    return copy


#: (catch-up lag, live lag) after each probe
OnLag = Callable[[int, int], Awaitable[None]]


class CatchUp(Lifecycle):
    """One catch-up group writing `target_index`; `until_near()`, then `for_seconds()`."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        probe: LagProbe,
        *,
        group_id: str,
        target_index: str,
        mappings_differ: bool,
        live_gate: LiveGate | None = None,
    ) -> None:
        self.group_id = group_id
        self.live_group = settings.kafka.group_id
        self.target_index = target_index
        self._settings = settings
        self._probe = probe
        self.service = IndexerService(
            catchup_settings(settings, group_id),
            metrics,
            bulk_index=target_index,
            keep_letter=letter_filter(mappings_differ),
            bulk_gate=None if live_gate is None else self._yield_to_live,
        )
        self._live_gate = live_gate
        self._task: asyncio.Task[None] | None = None

    async def _yield_to_live(self) -> None:
        """Before each of its bulk requests: wait while the live group is behind (at most
        `REINDEX__LIVE_HOLD_MAX_S` at a time, as the backfill's pages do)."""
        if self._live_gate is not None:
            await self._live_gate.wait(self._settings.reindex.live_hold_max_s, stage="catchup")

    async def _start(self) -> None:
        committed = await self._probe.committed(self.group_id)
        log.info(
            "reindex catch-up group starts from its committed offsets",
            extra={"group_id": self.group_id, "committed_total": sum(committed.values())},
        )
        await self.service.start()
        self._task = asyncio.create_task(self.service.run_until_stopped(), name="reindex-catchup")
        log.info(
            "reindex catch-up started",
            extra={"group_id": self.group_id, "index": self.target_index},
        )

    async def _stop(self) -> None:
        self.service.request_stop()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            await self.service.stop()

    def _check_alive(self) -> None:
        task = self._task
        if task is not None and task.done():
            exc = None if task.cancelled() else task.exception()
            raise ReindexError(f"the catch-up group stopped: {exc or 'cancelled'}")

    async def lags(self) -> tuple[int, int]:
        """(catch-up group lag, live group lag) in records, against the same watermarks."""
        ends = await self._probe.highwaters()
        return await self._probe.lag(self.group_id, ends), await self._probe.lag(
            self.live_group, ends
        )

    async def until_near(self, on_lag: OnLag) -> None:
        """Return once the catch-up group trails the live group by at most the allowed lag."""
        r = self._settings.reindex
        while True:
            self._check_alive()
            caught, live = await self.lags()
            await on_lag(caught, live)
            if caught <= live + r.catchup_max_lag:
                return
            await asyncio.sleep(r.probe_interval_s)

    async def until_past(self, ends: dict[int, int], on_lag: OnLag) -> None:
        """Return once the group has committed every partition up to `ends` (the high
        watermarks at the alias switch: every record a pod could still have written to the
        index the aliases left is then in the new one too)."""
        interval = self._settings.reindex.probe_interval_s
        while True:
            self._check_alive()
            committed = await self._probe.committed(self.group_id)
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                return
            caught, live = await self.lags()
            await on_lag(caught, live)
            await asyncio.sleep(interval)

    async def for_seconds(self, seconds: float, on_lag: OnLag) -> None:
        """Keep replaying for `seconds` (the grace after a cutover), reporting the lag."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        interval = self._settings.reindex.probe_interval_s
        while True:
            self._check_alive()
            left = deadline - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(interval, left))
            caught, live = await self.lags()
            await on_lag(caught, live)


__all__ = ["NEW_MAPPING_CLASSES", "CatchUp", "catchup_settings", "letter_filter"]
