"""Observability, reindex: the `stream_indexer_reindex_*` metrics a running reindex exports.

Served on `METRICS__PORT` by the reindex process (next to its catch-up group's pipeline
metrics), so a dashboard can follow the phase, the backfill's progress and rate, how far
the catch-up group trails the live group, and how long both waited for it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

PHASES = (
    "backfill",
    "catchup",
    "grace",
    "done",
    "aborted",
    "failed",
    "rolling_back",
    "rolled_back",
)


class ReindexMetrics:
    """Registered on `registry` (the process's one registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.phase = Gauge(
            "stream_indexer_reindex_phase",
            "1 for the phase the reindex run is in, 0 for the others.",
            ["phase"],
            registry=r,
        )
        self.rows_done = Gauge(
            "stream_indexer_reindex_rows_done", "Source rows the backfill has written.", registry=r
        )
        self.rows_total = Gauge(
            "stream_indexer_reindex_rows_total",
            "Source rows counted when the run began.",
            registry=r,
        )
        self.docs_per_second = Gauge(
            "stream_indexer_reindex_docs_per_second",
            "Backfill documents written per second (since this process started it).",
            registry=r,
        )
        self.catchup_lag = Gauge(
            "stream_indexer_reindex_catchup_lag",
            "Records the catch-up group has not committed (all partitions).",
            registry=r,
        )
        self.live_lag = Gauge(
            "stream_indexer_reindex_live_lag",
            "Records the live group has not committed, measured by the reindex.",
            registry=r,
        )
        self.page_size = Gauge(
            "stream_indexer_reindex_page_size",
            "Source rows per backfill page (the AIMD's current choice).",
            registry=r,
        )
        self.throttled = Counter(
            "stream_indexer_reindex_throttled",
            "Backfill page-size decreases and holds, by reason: overload, latency, live_lag, "
            "live_behind, live_hold.",
            ["reason"],
            registry=r,
        )
        self.live_holds = Counter(
            "stream_indexer_reindex_live_holds",
            "Holds for the live group (live traffic first), by stage: a backfill page or a "
            "catch-up bulk request that waited while the live group was behind.",
            ["stage"],
            registry=r,
        )
        self.live_held_seconds = Counter(
            "stream_indexer_reindex_live_held_seconds",
            "Seconds held for the live group, by stage (added when each hold ends).",
            ["stage"],
            registry=r,
        )
        self.tombstones_carried = Gauge(
            "stream_indexer_reindex_tombstones_carried",
            "Tombstones copied from the old index.",
            registry=r,
        )

    def held(self, stage: str, seconds: float) -> None:
        """One hold for the live group has ended after `seconds`."""
        self.live_holds.labels(stage).inc()
        self.live_held_seconds.labels(stage).inc(max(0.0, seconds))

    def set_phase(self, phase: str) -> None:
        for name in PHASES:
            self.phase.labels(name).set(1 if name == phase else 0)


__all__ = ["PHASES", "ReindexMetrics"]
