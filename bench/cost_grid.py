"""Benchmark step `cost_grid`: what the sink charges for the documents a consumer must send.

The same events, turned into the documents the worker writes, are bulk-loaded straight into
osmem in several shapes, each point into a **fresh osmem process** (osmem slows as indices
and documents accumulate in one server, so reusing one would charge later points for
earlier ones):

- docs per bulk x requests in flight (in partition order: the order a consumer sees);
- event order (the order of the producer) vs partition order (partition by partition, each
  in offset order, as one consumer reading a backlog sees them);
- with or without the service's metadata fields (`version`, `indexed_at`, `event_id`);
- coalesced (only the newest version per listing within each window of
  `COALESCE_WINDOW` consecutive writes, which is what the worker's per-batch coalescing
  leaves) or not (every event's document).

Events/s counts the events a point covers (coalesced points send fewer documents for the
same events); docs/s what osmem indexed. docs/performance.md explains the figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from bench import osadmin
from bench.ceilings import _post_all
from bench.workload import Record, bulk_bodies, writes_for
from stream_indexer.devtools.demo import plan_events
from stream_indexer.devtools.devstack import OsmemProcess
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.mapping import METADATA_FIELDS
from stream_indexer.settings import BatchSettings

#: the worker's default batch (`BATCH__MAX_RECORDS`): coalescing keeps one write per listing
#: within a batch of one partition
COALESCE_WINDOW: int = BatchSettings.model_fields["max_records"].default
#: where the order, metadata and coalescing factors are measured
FACTOR_BATCH = 5_000
EXPECTED_ERRORS = ("ok", "version_conflict_engine_exception")


@dataclass(frozen=True)
class Shape:
    """One grid point's request shape."""

    order: str  # "partition" | "event"
    metadata: bool
    coalesced: bool
    batch: int
    in_flight: int

    @property
    def label(self) -> str:
        meta = "meta" if self.metadata else "no-meta"
        coal = "coalesced" if self.coalesced else "every-event"
        return f"{self.order} {meta} {coal} {self.batch}x{self.in_flight}"


@dataclass(frozen=True)
class Workload:
    name: str
    events: int
    listings: int


WORKLOADS_FULL = (
    Workload("overwrites", 20_000, 5_000),
    Workload("few-overwrites", 20_000, 15_000),
)
WORKLOADS_QUICK = (
    Workload("overwrites", 4_000, 1_000),
    Workload("few-overwrites", 4_000, 3_000),
)


def partition_of(key: bytes | None, partitions: int) -> int:
    """The partition aiokafka's default partitioner (Java's murmur2) puts `key` in."""
    assert key is not None
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def partition_order(records: Sequence[Record], partitions: int) -> list[Record]:
    """Records partition by partition, each in offset order (a consumer draining a backlog)."""
    by_partition: list[list[Record]] = [[] for _ in range(partitions)]
    for record in records:
        by_partition[partition_of(record[0], partitions)].append(record)
    return [record for part in by_partition for record in part]


def without_metadata(writes: Sequence[PendingWrite]) -> list[PendingWrite]:
    strip = set(METADATA_FIELDS) - {"deleted"}  # a tombstone stays a tombstone
    return [
        PendingWrite(
            w.listing_id, w.version, {k: v for k, v in w.document.items() if k not in strip}
        )
        for w in writes
    ]


def coalesce(writes: Sequence[PendingWrite], window: int = COALESCE_WINDOW) -> list[PendingWrite]:
    """The newest write per listing within each window, in first-seen order."""
    out: list[PendingWrite] = []
    for start in range(0, len(writes), window):
        newest: dict[int, PendingWrite] = {}
        for write in writes[start : start + window]:
            kept = newest.get(write.listing_id)
            if kept is None or write.version >= kept.version:
                newest[write.listing_id] = write
        out.extend(newest.values())
    return out


def sizes_and_flights(quick: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Docs per bulk and requests in flight of the size x in-flight grid."""
    return ((500, 2_000), (1, 4)) if quick else ((1_000, 5_000, 10_000), (1, 4))


def shapes(quick: bool) -> list[Shape]:
    """A size x in-flight grid in partition order, then order x metadata x coalescing at one
    mid-sized shape (the factors one at a time, not every combination: minutes, not hours)."""
    sizes, flights = sizes_and_flights(quick)
    grid = [Shape("partition", True, False, b, f) for b in sizes for f in flights]
    for order in ("partition", "event"):
        for metadata in (True, False):
            for coalesced in (False, True):
                point = Shape(order, metadata, coalesced, FACTOR_BATCH, 1)
                if point not in grid:
                    grid.append(point)
    return grid


def _documents(records: Sequence[Record], shape: Shape, partitions: int) -> list[PendingWrite]:
    ordered = partition_order(records, partitions) if shape.order == "partition" else records
    writes = writes_for(ordered)
    if not shape.metadata:
        writes = without_metadata(writes)
    return coalesce(writes) if shape.coalesced else writes


async def measure(
    records: Sequence[Record], shape: Shape, *, partitions: int, log_path: Path
) -> dict[str, Any]:
    """One point against its own fresh osmem process."""
    writes = _documents(records, shape, partitions)
    bodies = bulk_bodies(writes, shape.batch)
    server = OsmemProcess(log_path)
    url = await asyncio.to_thread(server.start)
    try:
        async with osadmin.session() as http:
            await osadmin.create_index(http, url, "grid")
            seconds, results = await _post_all(http, f"{url}/grid/_bulk", bodies, shape.in_flight)
    finally:
        await asyncio.to_thread(server.stop)
    unexpected = {k: v for k, v in results.items() if k not in EXPECTED_ERRORS}
    if unexpected:
        raise RuntimeError(f"cost grid {shape.label}: unexpected item errors {unexpected}")
    events = sum(1 for _ in records)
    return {
        "order": shape.order,
        "metadata": shape.metadata,
        "coalesced": shape.coalesced,
        "batch": shape.batch,
        "in_flight": shape.in_flight,
        "documents": len(writes),
        "body_mib": round(sum(len(b) for b, _ in bodies) / len(bodies) / 2**20, 2),
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1),
        "docs_per_s": round(len(writes) / seconds, 1),
        "stale_409": results.get("version_conflict_engine_exception", 0),
    }


def best(points: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The fastest point (events/s) among those matching every `match` field."""
    chosen = [p for p in points if all(p[k] == v for k, v in match.items())]
    return max(chosen, key=lambda p: p["events_per_s"]) if chosen else None


async def cost_grid(
    *,
    quick: bool,
    partitions: int,
    seed: int,
    logs: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every workload x shape; per workload the best every-event partition-order point (the
    documents a consumer must send, in the order it sees them: the end-to-end comparison)."""
    out: dict[str, Any] = {}
    for workload in WORKLOADS_QUICK if quick else WORKLOADS_FULL:
        plan = plan_events(workload.events, listings=workload.listings, seed=seed, poison_every=0)
        points: list[dict[str, Any]] = []
        grid = shapes(quick)
        if workload.name != "overwrites":  # only what the end-to-end comparison needs
            smallest = min(sizes_and_flights(quick)[0])
            grid = [
                s
                for s in grid
                if s.order == "partition"
                and s.metadata
                and not s.coalesced
                and s.batch > smallest  # the smallest requests never win on osmem
            ]
        for shape in grid:
            point = await measure(
                plan.records,
                shape,
                partitions=partitions,
                log_path=logs / f"osmem-grid-{workload.name}.log",
            )
            points.append(point)
            if progress is not None:
                progress(
                    f"  {workload.name} {shape.label}: {point['events_per_s']:,.0f} events/s "
                    f"({point['documents']:,} docs, {point['docs_per_s']:,.0f} docs/s)"
                )
        reference = best(points, order="partition", metadata=True, coalesced=False)
        out[workload.name] = {
            "events": len(plan.records),
            "listings": workload.listings,
            "points": points,
            "best_partition_order": reference,
        }
    return out
