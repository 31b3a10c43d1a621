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
import contextlib
import itertools
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from bench import indexer_proc, osadmin
from bench.alias_reader import AliasReader, cutover_pause, readers_summary
from bench.workload import ProducedTopic
from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.devtools.devstack._proc import free_port
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.kafka_clients import create_producer

#: the live stream's rate at most; `live_rate` sets it from the bulk ceiling of the same run
RATE = 500.0
#: the live stream's share of the bulk ceiling measured in the same run
CEILING_SHARE = 0.25
WINDOW_S = 20.0
LISTINGS = 2_000
#: (live stream alone, then with a reindex) windows; their histograms are pooled per side
PAIRS = 2
#: the longest a window with a reindex is fed, however long the reindex takes
MAX_FEED_S = 90.0
#: seconds between the timeline's scrapes of the histogram
TIMELINE_S = 1.0
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


def live_rate(ceiling_docs_per_s: float) -> float:
    """A quarter of what the server indexed at best in this run, at most `RATE`: live
    traffic that leaves the cluster room, as a cluster sized for its traffic does. At a
    fixed 500 events/s on a loaded 2-core machine the live stream alone used half to all of
    osmem's capacity, and its p99 without a reindex swung from 1.8 to 14.6 s between two
    windows a minute apart: no room for a rebuild, and no stable figure to compare with."""
    return float(max(50, min(RATE, round(ceiling_docs_per_s * CEILING_SHARE, -1))))


async def _scrape(http: aiohttp.ClientSession, url: str) -> Histogram | None:
    try:
        async with http.get(url) as response:
            return parse_histogram(await response.text())
    except aiohttp.ClientError:
        return None


async def _feed(
    bootstrap: str,
    topic: str,
    rate: float,
    seconds: float,
    seed: int,
    until: asyncio.Event | None = None,
) -> ProducedTopic:
    """Produce `rate` events/s for `seconds` and until `until` is set (at most `MAX_FEED_S`:
    a catch-up that cannot outpace the feed must not hold the bench forever), each stamped
    now (paced, not bursted); the topic's end offsets after the last one."""
    rng = random.Random(seed)
    producer = create_producer(
        None, bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    sent = 0
    futures = []
    try:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds or (
            until is not None and not until.is_set() and elapsed < MAX_FEED_S
        ):
            due = int(elapsed * rate) + 1
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
    return ProducedTopic(topic, sent, ends, time.monotonic() - started)


async def _drained(bootstrap: str, group: str, fed: ProducedTopic) -> None:
    """Until the indexer has committed everything fed: every event's freshness is in."""
    reader = indexer_proc.OffsetReader(bootstrap, group, fed.name, fed.ends)
    await reader.start()
    try:
        await reader.until_committed(fed.ends, timeout_s=120)
    finally:
        await reader.stop()


async def _timeline(
    http: aiohttp.ClientSession, url: str, stop: asyncio.Event, into: list[tuple[float, Histogram]]
) -> None:
    """A scrape every `TIMELINE_S` until `stop`: when in the window the slow events were
    acknowledged (the backfill's part or the catch-up's)."""
    while not stop.is_set():
        scraped = await _scrape(http, url)
        if scraped is not None:
            into.append((time.monotonic(), scraped))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TIMELINE_S)


def timeline(started: float, scrapes: list[tuple[float, Histogram]]) -> list[dict[str, Any]]:
    """Per interval between two scrapes: seconds into the window, events acknowledged, p99."""
    out = []
    for (_, before), (at, after) in itertools.pairwise(scrapes):
        p99 = quantile(0.99, before, after)
        out.append(
            {
                "t_s": round(at - started, 1),
                "acked": int(after.get(float("inf"), 0) - before.get(float("inf"), 0)),
                "p99_s": round(p99, 2) if p99 is not None else None,
            }
        )
    return out


async def _window(
    http: aiohttp.ClientSession,
    metrics_url: str,
    feed: Callable[[asyncio.Event | None], Any],
    drained: Callable[[ProducedTopic], Any],
    reader: AliasReader,
    alongside: Callable[[], Any] | None = None,
) -> tuple[dict[str, Any], Histogram]:
    """Freshness of the events fed during one window (for as long as `alongside` runs, when
    given), once all of them are committed; the reader searches the alias meanwhile. Also
    the window's own histogram (counts by bound), for pooling."""
    before = await _scrape(http, metrics_url)
    assert before is not None
    started, stop, scrapes = time.monotonic(), asyncio.Event(), [(time.monotonic(), before)]
    background = [
        asyncio.create_task(reader.run(stop)),
        asyncio.create_task(_timeline(http, metrics_url, stop, scrapes)),
    ]
    try:
        if alongside is None:
            results = [await feed(None)]
        else:
            ended = asyncio.Event()

            async def side() -> Any:
                try:
                    return await alongside()
                finally:
                    ended.set()

            results = list(await asyncio.gather(feed(ended), side()))
        await drained(results[0])
    finally:
        stop.set()
        await asyncio.gather(*background)
    after = await _scrape(http, metrics_url)
    assert after is not None
    delta = {bound: count - before.get(bound, 0.0) for bound, count in after.items()}
    out: dict[str, Any] = {
        "events": results[0].records,
        "fed_s": round(results[0].produce_s, 1),
        "observed": int(delta.get(float("inf"), 0)),
        **_quantiles(delta),
        "timeline": timeline(started, [*scrapes, (time.monotonic(), after)]),
    }
    if alongside is not None:
        out["reindex"] = results[1]
    return out, delta


def _quantiles(delta: Histogram) -> dict[str, float | None]:
    p50, p99 = quantile(0.5, {}, delta), quantile(0.99, {}, delta)
    return {
        "p50_s": round(p50, 3) if p50 is not None else None,
        "p99_s": round(p99, 3) if p99 is not None else None,
    }


def pooled(deltas: list[Histogram]) -> Histogram:
    """The windows' histograms added up: one sample set per condition."""
    out: Histogram = {}
    for delta in deltas:
        for bound, count in delta.items():
            out[bound] = out.get(bound, 0.0) + count
    return out


def _ratio(during: float | None, alone: float | None) -> float | None:
    return round(during / alone, 2) if during is not None and alone else None


async def live_freshness(
    endpoints: StackEndpoints,
    *,
    rid: str,
    logs: Path,
    reindex: Callable[[dict[str, str]], Any],
    rate: float = RATE,
    window_s: float = WINDOW_S,
) -> dict[str, Any]:
    """Freshness p50 / p99 of a live stream of `rate` events/s alone, then with
    `reindex(env)` running."""
    topic = f"bench-{rid}-live"
    await ensure_topic(endpoints.kafka_bootstrap, topic, partitions=3)
    await ensure_topic(endpoints.kafka_bootstrap, f"{topic}.dlq", partitions=1)
    port, group, bootstrap = free_port(), f"bench-{rid}-live", endpoints.kafka_bootstrap
    url = endpoints.opensearch_url
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
            await _drained(bootstrap, group, await _feed(bootstrap, topic, rate, 5.0, seed=1))

            async def drained(fed: ProducedTopic) -> None:
                await _drained(bootstrap, group, fed)

            pairs: list[dict[str, Any]] = []
            deltas: dict[str, list[Histogram]] = {"alone": [], "during": []}
            for n in range(PAIRS):
                readers = (AliasReader(url, topic), AliasReader(url, topic))
                alone, delta_alone = await _window(
                    http,
                    metrics_url,
                    partial(_feed, bootstrap, topic, rate, window_s, 2 + 2 * n),
                    drained,
                    readers[0],
                )
                during, delta_during = await _window(
                    http,
                    metrics_url,
                    partial(_feed, bootstrap, topic, rate, window_s, 3 + 2 * n),
                    drained,
                    readers[1],
                    lambda: reindex(env),
                )
                deltas["alone"].append(delta_alone)
                deltas["during"].append(delta_during)
                pairs.append(
                    {
                        "without_reindex": alone,
                        "with_reindex": during,
                        "p99_with_vs_without": _ratio(during["p99_s"], alone["p99_s"]),
                        "readers": cutover_pause(
                            readers[0].searches, readers[1].searches, f"{topic}_v{n + 2}"
                        ),
                    }
                )
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 60)
        async with osadmin.session() as admin:  # the later steps share this server
            for n in range(1, PAIRS + 2):
                await osadmin.delete_index(admin, url, f"{topic}_v{n}")
    alone_all, during_all = pooled(deltas["alone"]), pooled(deltas["during"])
    alone_q, during_q = _quantiles(alone_all), _quantiles(during_all)
    ratios = [pair["p99_with_vs_without"] for pair in pairs]
    return {
        "rate_per_s": rate,
        "window_s": window_s,
        "pairs": pairs,
        "without_reindex": {"observed": int(alone_all.get(float("inf"), 0)), **alone_q},
        "with_reindex": {"observed": int(during_all.get(float("inf"), 0)), **during_q},
        # each pair's windows are adjacent (the machine's load alike): their ratio, median
        # over the pairs; the pooled one lets one overloaded window without a reindex hide
        # a bad one with it, so it is kept for reference only
        "p99_with_vs_without": (
            round(statistics.median(ratios), 2) if None not in ratios and ratios else None
        ),
        "p99_pooled_with_vs_without": _ratio(during_q["p99_s"], alone_q["p99_s"]),
        "readers": readers_summary([pair["readers"] for pair in pairs]),
    }
