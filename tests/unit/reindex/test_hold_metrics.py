"""The live gate's holds as metrics: the gate a reindex builds reports each hold of the
backfill and of the catch-up to `stream_indexer_reindex_live_holds_total` and
`stream_indexer_reindex_live_held_seconds_total`, labelled by stage."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from stream_indexer.observability.reindex_metrics import ReindexMetrics
from stream_indexer.reindex import operation
from stream_indexer.reindex.backfill import Backfill
from stream_indexer.reindex.catchup import CatchUp
from stream_indexer.reindex.throttle import LiveGate, LiveProbe
from stream_indexer.settings import load_settings


def _session() -> Any:
    registry = CollectorRegistry()
    return SimpleNamespace(
        settings=load_settings(),
        live_group="stream-indexer",
        reindex_metrics=ReindexMetrics(registry),
        registry=registry,
    )


def _hold(gate: LiveGate) -> None:
    """Two readings: 500 records/s produced, the live group 4 s behind and committing."""
    gate.observe(LiveProbe(produced=2_000, committed=500, lag=1_500, at=0.0))
    gate.observe(LiveProbe(produced=3_000, committed=1_000, lag=2_000, at=2.0))
    assert gate.hold


def _release(gate: LiveGate) -> None:
    gate.observe(LiveProbe(produced=4_000, committed=3_900, lag=100, at=4.0))
    assert not gate.hold


def _value(session: Any, name: str, stage: str) -> float:
    value = session.registry.get_sample_value(name, {"stage": stage})
    return 0.0 if value is None else float(value)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0  # long under way: the hold share does not cut these holds short

    def __call__(self) -> float:
        return self.now


async def _held_once(gate: LiveGate, clock: Clock, seconds: float, wait: Any) -> None:
    _hold(gate)
    waiter = asyncio.create_task(wait())
    await asyncio.sleep(0)
    assert not waiter.done(), "the gate holds"
    clock.now += seconds
    _release(gate)
    await waiter


async def test_a_hold_of_the_backfill_and_of_the_catchup_reach_the_metrics() -> None:
    session = _session()
    watch = operation._live_watch(session, probe=None)  # type: ignore[arg-type]
    gate, clock = watch.gate, Clock()
    gate._clock, gate._since = clock, 0.0
    # the backfill's wait before a page, as Backfill calls it
    backfill: Any = Backfill.__new__(Backfill)
    backfill._t = SimpleNamespace(live_gate=gate, settings=session.settings)
    await _held_once(gate, clock, 2.0, backfill._wait_for_live)
    # the catch-up's wait before a bulk request, as its pipeline calls it
    catchup: Any = CatchUp.__new__(CatchUp)
    catchup._live_gate, catchup._settings = gate, session.settings
    await _held_once(gate, clock, 1.5, catchup._yield_to_live)
    await _held_once(gate, clock, 0.5, catchup._yield_to_live)

    holds = "stream_indexer_reindex_live_holds_total"
    seconds = "stream_indexer_reindex_live_held_seconds_total"
    assert _value(session, holds, "backfill") == 1
    assert _value(session, holds, "catchup") == 2
    assert _value(session, seconds, "backfill") == 2.0
    assert _value(session, seconds, "catchup") == 2.0


async def test_an_open_gate_counts_nothing() -> None:
    session = _session()
    gate = operation._live_watch(session, probe=None).gate  # type: ignore[arg-type]
    gate._clock, gate._since = Clock(), 0.0
    assert await gate.wait(1.0, stage="backfill") is False
    assert _value(session, "stream_indexer_reindex_live_holds_total", "backfill") == 0
