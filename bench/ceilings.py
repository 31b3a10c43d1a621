"""Ceilings: the fastest the local servers go with no pipeline in between.

- bulk ceiling: pre-serialized `_bulk` bodies (index actions, external_gte versions, the
  project's mapping) posted straight to OpenSearch, best of a grid of batch sizes and
  requests in flight;
- consume ceiling: one aiokafka consumer draining the topic with `getmany`, no processing.

The indexer's throughput is read against these, measured in the same run on the same
machine, so the ratio means something even when the absolute numbers do not travel.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import osadmin
from bench.workload import ProducedTopic, bulk_bodies
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.sink import NDJSON_HEADERS

BATCH_SIZES = (500, 1000, 5000)
IN_FLIGHT = (1, 2, 4)
CONSUME_MAX_RECORDS = 10_000


async def _post_all(
    http: aiohttp.ClientSession, url: str, bodies: Sequence[tuple[bytes, int]], in_flight: int
) -> tuple[float, Counter[str]]:
    """Send every body in order with `in_flight` requests at a time; (seconds, item results)."""
    results: Counter[str] = Counter()
    queue = iter(bodies)

    async def sender() -> None:
        for body, _items in queue:
            async with http.post(url, data=body, headers=NDJSON_HEADERS) as response:
                raw = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"bulk failed: HTTP {response.status} {raw[:200]!r}")
            for item in orjson.loads(raw)["items"]:
                outcome = item["index"]
                status = outcome.get("status", 0)
                results["ok" if status < 300 else str(outcome.get("error", {}).get("type"))] += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return time.perf_counter() - started, results


async def bulk_ceiling(
    opensearch_url: str,
    writes: Sequence[PendingWrite],
    *,
    prefix: str,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    in_flight: Sequence[int] = IN_FLIGHT,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Events/s of every grid point (each into a fresh index, dropped afterwards); the best."""
    grid: list[dict[str, Any]] = []
    async with osadmin.session() as http:
        for size in batch_sizes:
            bodies = bulk_bodies(writes, size)
            for flight in in_flight:
                index = f"{prefix}-bulk-{size}-{flight}"
                await osadmin.create_index(http, opensearch_url, index)
                try:
                    seconds, results = await _post_all(
                        http, f"{opensearch_url}/{index}/_bulk", bodies, flight
                    )
                finally:
                    await osadmin.delete_index(http, opensearch_url, index)
                unexpected = {
                    k: v
                    for k, v in results.items()
                    if k not in ("ok", "version_conflict_engine_exception")
                }
                if unexpected:
                    raise RuntimeError(f"bulk ceiling: unexpected item errors {unexpected}")
                if progress is not None:
                    progress(f"  batch {size} x {flight}: {len(writes) / seconds:,.0f} events/s")
                grid.append(
                    {
                        "batch_size": size,
                        "in_flight": flight,
                        "seconds": round(seconds, 3),
                        "events_per_s": round(len(writes) / seconds, 1),
                        "stale_409": results.get("version_conflict_engine_exception", 0),
                    }
                )
    best = max(grid, key=lambda g: g["events_per_s"])
    return {
        "documents": len(writes),
        "events_per_s": best["events_per_s"],
        "best": {"batch_size": best["batch_size"], "in_flight": best["in_flight"]},
        "grid": grid,
    }


async def consume_ceiling(bootstrap: str, topic: ProducedTopic) -> dict[str, Any]:
    """Drain the whole topic with `getmany(max_records=10000)` and do nothing else."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=50 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic.name, p) for p in topic.ends])
        await consumer.seek_to_beginning()
        seen = 0
        started = time.perf_counter()
        deadline = started + 600
        while seen < topic.records:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"consume ceiling: only {seen} of {topic.records} records")
            batches = await consumer.getmany(timeout_ms=1000, max_records=CONSUME_MAX_RECORDS)
            seen += sum(len(records) for records in batches.values())
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"records": seen, "seconds": round(seconds, 3), "events_per_s": round(seen / seconds, 1)}
