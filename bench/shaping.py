"""Benchmark step `shaping`: the indexer end to end on osmem, fixed vs adaptive concurrency,
against the cost grid's best point for the same documents.

For each cost-grid workload (same plan, same seed: the same documents the grid loaded), the
indexer drains the backlog twice, into a fresh osmem process each time: once with the fixed
in-flight limit (`OPENSEARCH__MAX_IN_FLIGHT_BULKS`), once with
`OPENSEARCH__ADAPTIVE_CONCURRENCY`. Each run records, once a second, requests sent, documents,
the in-flight limit and committed records: `shaping.svg` next to the results plots them.

Freshness (event `occurred_at` to indexed) means nothing for a backlog of back-dated events,
so it is measured on a live stream: events stamped when produced, at a steady rate below the
sink's ceiling, with each mode; p50 / p99 from the indexer's freshness histogram (its
bucket bounds, so coarse).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import osadmin
from bench.cost_grid import WORKLOADS_FULL, WORKLOADS_QUICK
from bench.indexer_proc import run_indexer
from bench.plot import write_svg
from bench.workload import ProducedTopic, produce_backlog
from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.demo import plan_events
from stream_indexer.devtools.devstack import OsmemProcess, StackEndpoints
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.kafka_clients import create_producer

MODES = {"fixed": "false", "adaptive": "true"}
LIVE_RATE = 200  # events/s: well below osmem's ceiling for this workload on 2 cores
LIVE_SECONDS = 20
LIVE_LISTINGS = 5_000
UNKNOWN_END = 2**62
#: events produced before the indexer fetches (it needs a record to start measuring)
WARM_UP = 10


async def _run(
    endpoints: StackEndpoints,
    topic: ProducedTopic,
    *,
    name: str,
    mode: str,
    logs: Path,
    extra_env: dict[str, str],
    expected: int | None,
    fetching: asyncio.Event | None = None,
) -> dict[str, Any]:
    server = OsmemProcess(logs / f"osmem-shaping-{name}-{mode}.log")
    url = await asyncio.to_thread(server.start)
    try:
        timeline: list[dict[str, float]] = []
        env = {
            **extra_env,
            "STREAM_INDEXER_OPENSEARCH__HOSTS": url,
            "STREAM_INDEXER_OPENSEARCH__ADAPTIVE_CONCURRENCY": MODES[mode],
        }
        result = await run_indexer(
            endpoints,
            topic,
            group_id=f"{topic.name}-{mode}",
            index=f"shaping-{mode}",
            log_path=logs / f"indexer-shaping-{name}-{mode}.log",
            extra_env=env,
            timeline=timeline,
            fetching=fetching,
        )
        result["timeline"] = timeline
        if expected is not None:
            async with osadmin.session() as http:
                count = await osadmin.count(http, url, f"shaping-{mode}_v1")
            result["index_ok"] = count == expected
            if count != expected:
                raise RuntimeError(f"shaping {name} {mode}: {count} documents, {expected} expected")
    finally:
        await asyncio.to_thread(server.stop)
    return result


async def produce_live(
    bootstrap: str,
    topic: ProducedTopic,
    fetching: asyncio.Event,
    *,
    rate: int,
    seconds: float,
    seed: int,
) -> None:
    """A few warm-up events, then (once the indexer fetches) events stamped now, `rate` a
    second for `seconds`; then `topic` learns its ends. The warm-up events wait for the
    indexer's start-up: they are kept under 1 % of the stream so that p99 is the stream's."""
    rng = random.Random(seed)
    producer = create_producer(
        None, bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    ends: dict[int, int] = {}
    sent = sent_live = 0
    version = 10**15
    try:
        started = time.monotonic()
        tick = 0.1
        warm_up = True
        while time.monotonic() - started < seconds:
            now = datetime.now(UTC)
            futures = []
            for _ in range(WARM_UP if warm_up else int(rate * tick)):
                listing = rng.randrange(1, LIVE_LISTINGS + 1)
                version += 1
                value = event_bytes(
                    listing, version, "index", listing_data(rng, listing, now), now, rng
                )
                futures.append(await producer.send(topic.name, value, key=str(listing).encode()))
            for future in futures:
                meta = await future
                ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
            sent += len(futures)
            if warm_up:
                await fetching.wait()
                warm_up, started, sent_live = False, time.monotonic(), sent
                continue
            await asyncio.sleep(max(0.0, started + (sent - sent_live) / rate - time.monotonic()))
    finally:
        await producer.stop()
    topic.ends.clear()
    topic.ends.update(ends)
    topic.records = sent


async def _live(
    endpoints: StackEndpoints,
    *,
    rid: str,
    mode: str,
    partitions: int,
    seconds: float,
    seed: int,
    logs: Path,
    extra_env: dict[str, str],
) -> dict[str, Any]:
    name = f"bench-{rid}-live-{mode}"
    await ensure_topic(endpoints.kafka_bootstrap, name, partitions=partitions)
    topic = ProducedTopic(name, 0, {p: UNKNOWN_END for p in range(partitions)}, 0.0)
    fetching = asyncio.Event()
    producing = asyncio.create_task(
        produce_live(
            endpoints.kafka_bootstrap, topic, fetching, rate=LIVE_RATE, seconds=seconds, seed=seed
        )
    )
    try:
        result = await _run(
            endpoints,
            topic,
            name="live",
            mode=mode,
            logs=logs,
            extra_env=extra_env,
            expected=None,
            fetching=fetching,
        )
    finally:
        fetching.set()  # never leave the producer waiting for an indexer that failed
        await producing
    result.pop("timeline", None)
    return result


async def shaping(
    endpoints: StackEndpoints,
    *,
    rid: str,
    quick: bool,
    partitions: int,
    seed: int,
    logs: Path,
    output_dir: Path,
    grid: dict[str, Any] | None,
    extra_env: dict[str, str],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Both modes on every workload, then on a live stream; the plot; ratios to the grid."""
    out: dict[str, Any] = {"workloads": {}}
    for workload in WORKLOADS_QUICK if quick else WORKLOADS_FULL:
        plan = plan_events(workload.events, listings=workload.listings, seed=seed, poison_every=0)
        topic = await produce_backlog(
            endpoints.kafka_bootstrap,
            f"bench-{rid}-shaping-{workload.name}",
            plan.records,
            partitions=partitions,
        )
        runs: dict[str, Any] = {}
        for mode in MODES:
            progress(f"shaping: {workload.name}, {mode} concurrency, {topic.records:,} records")
            runs[mode] = await _run(
                endpoints,
                topic,
                name=workload.name,
                mode=mode,
                logs=logs,
                extra_env=extra_env,
                expected=len(plan.expected),
            )
            progress(f"  {runs[mode]['events_per_s']:,.0f} events/s")
        best = (grid or {}).get(workload.name, {}).get("best_partition_order")
        entry: dict[str, Any] = {"runs": runs}
        if best:
            entry["grid_best"] = best
            for mode, run in runs.items():
                entry[f"{mode}_vs_grid"] = round(run["events_per_s"] / best["events_per_s"], 3)
        out["workloads"][workload.name] = entry
    seconds = 6 if quick else LIVE_SECONDS
    live: dict[str, Any] = {}
    for mode in MODES:
        progress(f"shaping: live stream at {LIVE_RATE} events/s for {seconds} s, {mode}")
        live[mode] = await _live(
            endpoints,
            rid=rid,
            mode=mode,
            partitions=partitions,
            seconds=seconds,
            seed=seed,
            logs=logs,
            extra_env=extra_env,
        )
        progress(
            f"  freshness p50 <= {live[mode]['freshness_p50_s']} s, "
            f"p99 <= {live[mode]['freshness_p99_s']} s"
        )
    out["live"] = {"rate": LIVE_RATE, "seconds": seconds, "runs": live}
    plot = output_dir / "shaping.svg"
    write_svg(plot, {name: w["runs"] for name, w in out["workloads"].items()})
    out["plot"] = str(plot)
    return out
