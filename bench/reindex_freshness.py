"""Reindex figure: live indexing's freshness with and without a reindex running.

One indexer (`stream-indexer run`, a child process) consumes a live topic fed at a fixed
rate (events stamped `occurred_at` = now, a small pool of listings so the index stays small
on osmem). Window 1: the live stream alone. Window 2: the same stream while
`stream-indexer reindex run` rebuilds the indexer's own alias from a source table (backfill,
catch-up, cutover), as an operator would run it. Freshness is the indexer's
`stream_indexer_freshness_seconds` histogram (acknowledged write minus `occurred_at`), the
difference of two scrapes: before a window, and once the group has committed every event fed
in it (a slow event is never left out); p50 / p99 are interpolated inside its buckets
as `histogram_quantile` does, so they are as coarse as the buckets (0.05, 0.1, 0.25, 0.5,
1, 2.5, 5 s, ...). Target: p99 with a reindex <= 1.5 x p99 without.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import indexer_proc, osadmin
from bench.workload import ProducedTopic
from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.devtools.devstack._proc import free_port
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.kafka_clients import create_producer

RATE = 500.0
WINDOW_S = 20.0
LISTINGS = 2_000
_FRESHNESS = "stream_indexer_freshness_seconds_bucket{"
Histogram = dict[float, float]


def parse_histogram(text: str) -> Histogram:
    """Cumulative counts by upper bound (`le`) of the freshness histogram, summed over labels."""
    buckets: Histogram = {}
    for line in text.splitlines():
        if not line.startswith(_FRESHNESS):
            continue
        labels, value = line.rsplit(" ", 1)
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def quantile(q: float, before: Histogram, after: Histogram) -> float | None:
    """`histogram_quantile(q)` of the observations between two scrapes (None: none seen).
    Linear inside the bucket; a quantile in the +Inf bucket reads as the largest bound."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


async def _scrape(http: aiohttp.ClientSession, url: str) -> Histogram | None:
    try:
        async with http.get(url) as response:
            return parse_histogram(await response.text())
    except aiohttp.ClientError:
        return None


async def _feed(bootstrap: str, topic: str, seconds: float, seed: int) -> ProducedTopic:
    """Produce `RATE` events/s for `seconds`, each stamped now (paced, not bursted); the
    topic's end offsets after the last one."""
    rng = random.Random(seed)
    producer = create_producer(
        None, bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    sent = 0
    futures = []
    try:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * RATE) + 1
            while sent < due:
                listing_id = 1 + rng.randrange(LISTINGS)
                now = datetime.now(UTC)
                version = time.time_ns() // 1_000
                value = event_bytes(
                    listing_id, version, "index", listing_data(rng, listing_id, now), now, rng
                )
                futures.append(
                    await producer.send(topic, value=value, key=str(listing_id).encode())
                )
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        ends: dict[int, int] = {}
        for future in futures:
            meta = await future
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ProducedTopic(topic, sent, ends, seconds)


async def _drained(bootstrap: str, group: str, fed: ProducedTopic) -> None:
    """Until the indexer has committed everything fed: every event's freshness is in."""
    reader = indexer_proc.OffsetReader(bootstrap, group, fed)
    await reader.start()
    try:
        deadline = time.monotonic() + 120
        while any(done < fed.ends[partition] for partition, done in (await reader.read()).items()):
            if time.monotonic() > deadline:
                raise RuntimeError("live indexer did not catch up within 120 s")
            await asyncio.sleep(0.2)
    finally:
        await reader.stop()


async def _window(
    http: aiohttp.ClientSession,
    metrics_url: str,
    feed: Callable[[], Any],
    drained: Callable[[ProducedTopic], Any],
    alongside: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Freshness of the events fed during one window, once all of them are committed."""
    before = await _scrape(http, metrics_url)
    assert before is not None
    tasks = [asyncio.create_task(feed())]
    if alongside is not None:
        tasks.append(asyncio.create_task(alongside()))
    results = await asyncio.gather(*tasks)
    await drained(results[0])
    after = await _scrape(http, metrics_url)
    assert after is not None
    p50, p99 = quantile(0.5, before, after), quantile(0.99, before, after)
    out: dict[str, Any] = {
        "events": results[0].records,
        "observed": int(after.get(float("inf"), 0) - before.get(float("inf"), 0)),
        "p50_s": round(p50, 3) if p50 is not None else None,
        "p99_s": round(p99, 3) if p99 is not None else None,
    }
    if alongside is not None:
        out["reindex"] = results[1]
    return out


async def live_freshness(
    endpoints: StackEndpoints,
    *,
    rid: str,
    logs: Path,
    reindex: Callable[[dict[str, str]], Any],
    window_s: float = WINDOW_S,
) -> dict[str, Any]:
    """Freshness p50 / p99 of a live stream alone, then with `reindex(env)` running."""
    topic = f"bench-{rid}-live"
    await ensure_topic(endpoints.kafka_bootstrap, topic, partitions=3)
    await ensure_topic(endpoints.kafka_bootstrap, f"{topic}.dlq", partitions=1)
    port, group, bootstrap = free_port(), f"bench-{rid}-live", endpoints.kafka_bootstrap
    env = indexer_proc.indexer_env(endpoints, topic, group, topic, port)
    proc = indexer_proc.spawn(env, logs / "indexer-live.log")
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            deadline = time.monotonic() + 60
            while await _scrape(http, metrics_url) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"live indexer did not start; see {logs}")
                await asyncio.sleep(0.2)
            # warm-up: the group join and the first batches are not freshness
            await _drained(bootstrap, group, await _feed(bootstrap, topic, 5.0, seed=1))

            async def drained(fed: ProducedTopic) -> None:
                await _drained(bootstrap, group, fed)

            alone = await _window(
                http, metrics_url, lambda: _feed(bootstrap, topic, window_s, 2), drained
            )
            during = await _window(
                http,
                metrics_url,
                lambda: _feed(bootstrap, topic, window_s, 3),
                drained,
                lambda: reindex(env),
            )
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 60)
        async with osadmin.session() as admin:  # the later steps share this server
            for physical in (f"{topic}_v1", f"{topic}_v2"):
                await osadmin.delete_index(admin, endpoints.opensearch_url, physical)
    ratio = (
        round(during["p99_s"] / alone["p99_s"], 2)
        if during["p99_s"] is not None and alone["p99_s"]
        else None
    )
    return {
        "rate_per_s": RATE,
        "window_s": window_s,
        "without_reindex": alone,
        "with_reindex": during,
        "p99_with_vs_without": ratio,
    }
