"""Observability: every Prometheus metric the pipeline exports, in one object.

Names under `opensearch_indexing_*` are kept from the system this service replaces, so
existing dashboards keep working; everything else is `stream_indexer_*`. Counters count
items (records, documents), never requests. Labels carry only bounded values (topic,
partition, result, error class, store), never listing ids. Tests pass a fresh
`CollectorRegistry`; the service uses one registry per process.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: finer between 0.5 and 15 s, where freshness objectives are set: with only 1 / 2.5 / 5 / 10,
#: a p99 of 3 s and one of 4.9 s read the same
FRESHNESS_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 15, 30, 60, 300, 900, 3600,
)  # fmt: skip
BULK_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)


class Metrics:
    """All metrics of one indexer process, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Legacy names (dashboards of the replaced system depend on them).
        self.queue_size = Gauge(
            "opensearch_indexing_queue_size",
            "Records buffered in partition workers, not yet indexed or dead-lettered.",
            registry=r,
        )
        self.success = Counter(
            "opensearch_indexing_success",
            "Records whose outcome is final and good: indexed, deleted or stale-skipped.",
            registry=r,
        )
        self.failure = Counter(
            "opensearch_indexing_failure",
            "Records dead-lettered, by error class.",
            ["error_class"],
            registry=r,
        )
        self.retry = Counter(
            "opensearch_indexing_retry",
            "Items re-sent after a transient failure, by error class.",
            ["error_class"],
            registry=r,
        )
        self.latency = Histogram(
            "opensearch_indexing_latency_seconds",
            "Time from a record being fetched to its outcome being final.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # stream_indexer_* metrics.
        self.items = Counter(
            "stream_indexer_items",
            "Items by final result: indexed, deleted, stale, dead_lettered.",
            ["result"],
            registry=r,
        )
        self.stale_skipped = Counter(
            "stream_indexer_stale_skipped",
            "Events skipped because a newer version was already indexed (409) or coalesced.",
            ["reason"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "stream_indexer_consumer_lag",
            "High watermark minus committed offset, per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.oldest_uncommitted_age = Gauge(
            "stream_indexer_oldest_uncommitted_age_seconds",
            "Age of the oldest fetched record whose offset is not yet committed.",
            ["topic", "partition"],
            registry=r,
        )
        self.freshness = Histogram(
            "stream_indexer_freshness_seconds",
            "End-to-end delay: event occurred_at to its document being indexed.",
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self.bulk_duration = Histogram(
            "stream_indexer_bulk_duration_seconds",
            "Duration of one _bulk request.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bulk_size = Histogram(
            "stream_indexer_bulk_size_items",
            "Actions in one _bulk request.",
            buckets=BULK_SIZE_BUCKETS,
            registry=r,
        )
        self.bulk_in_flight = Gauge(
            "stream_indexer_bulk_in_flight",
            "_bulk requests currently in flight.",
            registry=r,
        )
        self.bulk_concurrency_limit = Gauge(
            "stream_indexer_bulk_concurrency_limit",
            "_bulk requests that may be in flight now (learned when adaptive concurrency is on).",
            registry=r,
        )
        self.bulk_item_errors = Counter(
            "stream_indexer_bulk_item_errors",
            "Bulk items that failed, by OpenSearch error type.",
            ["error_type"],
            registry=r,
        )
        self.dlq_writes = Counter(
            "stream_indexer_dlq_writes",
            "Dead letters written, by store (postgres, kafka) and error class.",
            ["store", "error_class"],
            registry=r,
        )
        self.dlq_write_failures = Counter(
            "stream_indexer_dlq_write_failures",
            "Failed attempts to write dead letters, by store.",
            ["store"],
            registry=r,
        )
        self.dlq_held_letters = Gauge(
            "stream_indexer_dlq_held_letters",
            "Dead letters a required DLQ store has not taken yet; their partitions hold.",
            registry=r,
        )
        self.dlq_degraded = Counter(
            "stream_indexer_dlq_degraded_letters",
            "Degradation steps of dead letters a store refused as they were, by store.",
            ["store"],
            registry=r,
        )
        self.dlq_entries = Gauge(
            "stream_indexer_dlq_entries",
            "Rows in the Postgres DLQ table, open and resolved (sampled periodically).",
            registry=r,
        )
        self.dlq_oldest_entry_age = Gauge(
            "stream_indexer_dlq_oldest_entry_age_seconds",
            "Age of the oldest row in the Postgres DLQ table, open or resolved; 0 when empty.",
            registry=r,
        )
        self.dlq_open_rows = Gauge(
            "stream_indexer_dlq_open_rows",
            "Open (unresolved) rows in the Postgres DLQ table (sampled periodically).",
            registry=r,
        )
        self.dlq_oldest_open_age = Gauge(
            "stream_indexer_dlq_oldest_open_age_seconds",
            "Age of the oldest open row in the Postgres DLQ table; 0 when none is open.",
            registry=r,
        )
        self.dlq_resolved_rows = Counter(
            "stream_indexer_dlq_resolved_rows",
            "DLQ table rows this process resolved, by resolution (indexed, superseded, stale).",
            ["resolution"],
            registry=r,
        )
        self.dlq_resolutions_pending = Gauge(
            "stream_indexer_dlq_resolutions_pending",
            "Written listings waiting to resolve their DLQ rows (the table may be down).",
            registry=r,
        )
        self.dlq_resolutions_dropped = Counter(
            "stream_indexer_dlq_resolutions_dropped",
            "Written listings whose DLQ resolution was dropped (buffer full); rows stay open.",
            registry=r,
        )
        self.circuit_state = Gauge(
            "stream_indexer_circuit_state",
            "Sink circuit breaker: 0 closed, 1 half-open, 2 open.",
            registry=r,
        )
        self.commits = Counter(
            "stream_indexer_commits",
            "Offset commits sent to Kafka.",
            registry=r,
        )
        self.committed_offset = Gauge(
            "stream_indexer_committed_offset",
            "Last committed offset per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.rebalances = Counter(
            "stream_indexer_rebalances",
            "Partition assignment changes, by kind (assigned, revoked).",
            ["kind"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "stream_indexer_assigned_partitions",
            "Partitions currently assigned to this process.",
            registry=r,
        )
        self.paused_partitions = Gauge(
            "stream_indexer_paused_partitions",
            "Partitions paused for back-pressure or an open circuit.",
            registry=r,
        )
        self.records_consumed = Counter(
            "stream_indexer_records_consumed",
            "Records fetched from Kafka.",
            registry=r,
        )
        self.build_info = Info(
            "stream_indexer_build",
            "Version of the running stream-indexer.",
            registry=r,
        )
        # `stream-indexer verify` (a short-lived job: pushed to a Pushgateway, see
        # VERIFY_METRIC_PREFIXES); each gauge describes the last run.
        self.drift_documents = Gauge(
            "stream_indexer_drift_documents",
            "Drift the last verify run found, by kind (missing, extra, version_behind, "
            "fields_different).",
            ["kind"],
            registry=r,
        )
        self.drift_remaining = Gauge(
            "stream_indexer_drift_remaining_documents",
            "Drift still present when the last verify run ended (found, less what it repaired).",
            registry=r,
        )
        self.drift_repaired = Gauge(
            "stream_indexer_drift_repaired_documents",
            "Drifted listings the last verify --repair run rewrote, by result (repaired, "
            "newer_meanwhile, failed).",
            ["result"],
            registry=r,
        )
        self.drift_ahead = Gauge(
            "stream_indexer_drift_ahead_documents",
            "Documents newer than their source row in the last verify run (not drift).",
            registry=r,
        )
        self.drift_invalid_source_rows = Gauge(
            "stream_indexer_drift_invalid_source_rows",
            "Source rows the last verify run found breaking the listing contract (not repaired).",
            registry=r,
        )
        self.drift_checked = Gauge(
            "stream_indexer_drift_checked_documents",
            "What the last verify run compared, by side (source rows, index documents).",
            ["side"],
            registry=r,
        )
        self.verify_last_run = Gauge(
            "stream_indexer_verify_last_run_timestamp_seconds",
            "When the last verify run that completed ended (Unix time).",
            registry=r,
        )
        self.verify_duration = Gauge(
            "stream_indexer_verify_duration_seconds",
            "How long the last completed verify run took.",
            registry=r,
        )


#: the families `stream-indexer verify` pushes (nothing of the pipeline's own)
VERIFY_METRIC_PREFIXES = ("stream_indexer_drift_", "stream_indexer_verify_")


def _histogram_internals(histogram: Histogram) -> tuple[Any, Any, Any] | None:
    """(bucket counters, upper bounds, sum) of an unlabelled histogram, or None when
    prometheus_client's internals are not what these shortcuts expect."""
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    if buckets is None or bounds is None or total is None:
        return None
    return buckets, bounds, total


def observe_many(histogram: Histogram, value: float, count: int) -> None:
    """Record `count` observations of the same `value` at the cost of one.

    All records of a batch finish at once, so their latencies come in a few identical
    values; observing each record separately costs a lock round-trip per record on the hot
    path. Falls back to `observe()` in a loop if prometheus_client's internals change.
    """
    if count <= 0:
        return
    internals = _histogram_internals(histogram)
    if internals is None:
        for _ in range(count):
            histogram.observe(value)
        return
    buckets, bounds, total = internals
    total.inc(value * count)
    for i, bound in enumerate(bounds):
        if value <= bound:
            buckets[i].inc(count)
            break


def observe_each(histogram: Histogram, values: Iterable[float]) -> None:
    """Record every value in `values` with one update per bucket touched.

    A batch writes hundreds of documents, each with its own freshness; `observe()` per
    document takes a lock per document on the hot path. Same fallback as `observe_many`.
    """
    internals = _histogram_internals(histogram)
    if internals is None:
        for value in values:
            histogram.observe(value)
        return
    buckets, bounds, total = internals
    counts = [0] * len(bounds)
    value_sum = 0.0
    for value in values:
        value_sum += value
        counts[bisect_left(bounds, value)] += 1
    total.inc(value_sum)
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


__all__ = ["VERIFY_METRIC_PREFIXES", "Metrics", "observe_each", "observe_many"]
