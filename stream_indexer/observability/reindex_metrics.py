"""Observability, reindex: the `stream_indexer_reindex_*` metrics a running reindex exports.

Served on `METRICS__PORT` by the reindex process (next to its catch-up group's pipeline
metrics), so a dashboard can follow the phase, the backfill's progress and rate, and how
far the catch-up group trails the live group.
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
            "Backfill page-size decreases, by reason: overload, latency, live_lag.",
            ["reason"],
            registry=r,
        )
        self.tombstones_carried = Gauge(
            "stream_indexer_reindex_tombstones_carried",
            "Tombstones copied from the old index.",
            registry=r,
        )

    def set_phase(self, phase: str) -> None:
        for name in PHASES:
            self.phase.labels(name).set(1 if name == phase else 0)


__all__ = ["PHASES", "ReindexMetrics"]
