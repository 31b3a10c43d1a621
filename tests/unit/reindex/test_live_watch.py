"""The live watch: each reading of the live group feeds the gate and the lag gauge."""

from __future__ import annotations

from typing import Any

from stream_indexer.reindex.live_watch import LiveWatch
from stream_indexer.reindex.throttle import LiveGate


class FakeProbe:
    """Stands in for LagProbe: scripted high watermarks and committed offsets."""

    def __init__(self) -> None:
        self.ends = {0: 1_000, 1: 1_000}
        self.committed_offsets = {0: 900, 1: 900}
        self.fail = False

    async def highwaters(self) -> dict[int, int]:
        if self.fail:
            raise ConnectionError("broker gone")
        return dict(self.ends)

    async def committed(self, _group: str) -> dict[int, int]:
        return dict(self.committed_offsets)


async def test_a_reading_feeds_the_gate_and_the_gauge_and_a_failed_one_is_skipped() -> None:
    probe, lags = FakeProbe(), list[int]()
    gate = LiveGate(3.0, smoothing=1.0)
    watch = LiveWatch(
        probe,  # type: ignore[arg-type]
        "live",
        gate,
        interval_s=0.5,
        on_lag=lags.append,
    )
    await watch.read_once()
    assert watch.latest_lag == 200 and lags == [200]
    probe.ends = {0: 1_500, 1: 1_500}
    probe.committed_offsets = {0: 950, 1: 950}
    await watch.read_once()
    assert watch.latest_lag == 1_100 and gate.behind_s > 0
    probe.fail = True
    await watch.read_once()
    assert watch.latest_lag is None and lags == [200, 1_100]


async def test_leaving_the_watch_stops_it_and_releases_the_gate() -> None:
    gate = LiveGate(3.0, smoothing=1.0)
    gate.open.clear()
    watch: Any = LiveWatch(FakeProbe(), "live", gate, interval_s=0.01)  # type: ignore[arg-type]
    async with watch:
        pass
    assert gate.open.is_set()
