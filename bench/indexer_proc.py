"""The indexer under test: `stream-indexer run` as a child process on a prepared backlog.

The child gets its settings from STREAM_INDEXER_* variables only (a fresh group, topic and
index per run). While it works we read its group's committed offsets from the broker
(OffsetFetch from a manually assigned consumer, which never joins the group; tansu cannot
list group offsets through the admin API), scrape its /metrics for the fetch and outcome
counters, and sample /proc for CPU and RSS. Once it has committed everything (or a time
limit passes) it gets SIGTERM, and `os.wait4` gives its rusage: CPU per event over the
whole process life, start-up included.

Peak RSS is the child's own `VmHWM` (read from /proc until it exits), not `ru_maxrss`: on
Linux a child's `ru_maxrss` starts at its parent's RSS at fork time (the high-water mark
survives exec), and this parent holds the whole event plan in memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import profile
from bench.procstat import read_proc
from bench.workload import ProducedTopic
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.devtools.devstack._proc import free_port

SAMPLE_EVERY_S = 0.1
SCRAPE_EVERY_TICKS = 10
STOP_TIMEOUT_S = 60.0


@dataclass
class Sample:
    """One look at the child: its counters (from /metrics) and its CPU and RSS (from /proc)."""

    at: float
    consumed: float = 0.0
    finished: float = 0.0
    documents: float = 0.0
    #: bulk requests answered, the in-flight limit and requests in flight (gauges)
    requests: float = 0.0
    limit: float = 0.0
    in_flight: float = 0.0
    #: freshness histogram: upper bound -> cumulative count
    freshness: dict[float, float] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0


def indexer_env(
    endpoints: StackEndpoints, topic: str, group_id: str, index: str, metrics_port: int
) -> dict[str, str]:
    """The child's environment: this process's, minus any STREAM_INDEXER_* set outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_INDEXER_")}
    env.update(
        {
            "STREAM_INDEXER_KAFKA__BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
            "STREAM_INDEXER_KAFKA__TOPIC": topic,
            "STREAM_INDEXER_KAFKA__GROUP_ID": group_id,
            "STREAM_INDEXER_KAFKA__ENABLE_IDEMPOTENCE": "false",
            "STREAM_INDEXER_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "STREAM_INDEXER_OPENSEARCH__HOSTS": endpoints.opensearch_url,
            "STREAM_INDEXER_OPENSEARCH__INDEX": index,
            "STREAM_INDEXER_POSTGRES__DSN": endpoints.postgres_dsn,
            "STREAM_INDEXER_METRICS__HOST": "127.0.0.1",
            "STREAM_INDEXER_METRICS__PORT": str(metrics_port),
        }
    )
    return env


def spawn(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream_indexer", "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def parse_metrics(text: str, sample: Sample) -> None:
    """Pick the progress counters out of the Prometheus text format."""
    for line in text.splitlines():
        if line.startswith("stream_indexer_records_consumed_total "):
            sample.consumed = float(line.rsplit(" ", 1)[1])
        elif line.startswith("stream_indexer_items_total{"):
            sample.finished += float(line.rsplit(" ", 1)[1])
        elif line.startswith("stream_indexer_bulk_size_items_sum "):
            sample.documents = float(line.rsplit(" ", 1)[1])
        elif line.startswith("stream_indexer_bulk_size_items_count "):
            sample.requests = float(line.rsplit(" ", 1)[1])
        elif line.startswith("stream_indexer_bulk_concurrency_limit "):
            sample.limit = float(line.rsplit(" ", 1)[1])
        elif line.startswith("stream_indexer_bulk_in_flight "):
            sample.in_flight = float(line.rsplit(" ", 1)[1])
        elif line.startswith('stream_indexer_freshness_seconds_bucket{le="'):
            bound = line.split('"', 2)[1]
            sample.freshness[float(bound)] = float(line.rsplit(" ", 1)[1])


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile `q` (None: no observations)."""
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return None


class OffsetReader:
    """The group's committed offsets, read from the broker without joining the group (a
    manually assigned consumer only sends OffsetFetch): costs the indexer nothing."""

    def __init__(
        self, bootstrap: str, group_id: str, topic: str, partitions: Iterable[int]
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
        )
        self._group_id = group_id
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._tps)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def read(self) -> dict[int, int]:
        return {tp.partition: (await self._consumer.committed(tp)) or 0 for tp in self._tps}

    async def ends(self) -> dict[int, int]:
        """Each partition's end offset now."""
        found = await self._consumer.end_offsets(self._tps)
        return {tp.partition: offset for tp, offset in found.items()}

    async def until_committed(
        self,
        ends: Mapping[int, int],
        *,
        timeout_s: float,
        proc: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """Until the group has committed `ends` on every partition; raises once `timeout_s`
        passed or `proc` (the consumer) exited first."""
        deadline = time.monotonic() + timeout_s
        while any(done < ends[partition] for partition, done in (await self.read()).items()):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{self._group_id} exited before committing everything")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self._group_id} did not commit everything in {timeout_s:g} s")
            await asyncio.sleep(0.2)  # another process's progress: polled, nothing to await


async def scrape(http: aiohttp.ClientSession, url: str, sample: Sample) -> bool:
    """Fill `sample`'s counters from /metrics; False while the server is not listening."""
    try:
        async with http.get(url) as response:
            parse_metrics(await response.text(), sample)
    except aiohttp.ClientError:
        return False
    return True


def _try_wait4(pid: int) -> tuple[int, int, Any]:
    """`os.wait4` without blocking: (0, 0, None) while the child still runs."""
    return os.wait4(pid, os.WNOHANG)


async def _reap(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, Any, int]:
    """Wait for the child with wait4 (keeps its rusage), following its peak RSS until it
    exits; SIGKILL after `timeout_s`. Returns (exit code, rusage, peak RSS KiB)."""
    deadline = time.monotonic() + timeout_s
    hwm = 0
    while True:
        hwm = max(hwm, read_proc(proc.pid)[2])
        pid, status, usage = _try_wait4(proc.pid)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage, hwm
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        await asyncio.sleep(0.05)


async def run_indexer(
    endpoints: StackEndpoints,
    topic: ProducedTopic,
    *,
    group_id: str,
    index: str,
    log_path: Path,
    time_limit_s: float | None = None,
    stop_after_records: int | None = None,
    timeout_s: float = 1800.0,
    profile_out: Path | None = None,
    extra_env: dict[str, str] | None = None,
    timeline: list[dict[str, float]] | None = None,
    fetching: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Run the indexer over `topic`'s backlog until it has committed all of it (or, with
    `time_limit_s`, until that long after its first fetch, or with `stop_after_records`,
    until that many records are committed); measurements as a dict.

    Progress comes from the broker (committed offsets, every 0.1 s) and /proc; /metrics is
    scraped every 0.1 s only until the first fetch, then once a second (rendering the
    metrics costs the indexer CPU, which is what is being measured). With `timeline`, each
    scrape after the first fetch appends the figures request shaping is judged by;
    `fetching` is set at the first fetch.
    """
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    offsets = OffsetReader(endpoints.kafka_bootstrap, group_id, topic.name, topic.ends)
    await offsets.start()
    env = indexer_env(endpoints, topic.name, group_id, index, port)
    env.update(extra_env or {})
    proc = spawn(env, log_path)
    spawned = time.perf_counter()
    profiler = profile.start(proc.pid, profile_out) if profile_out is not None else None
    first: Sample | None = None
    last = counters = Sample(spawned)
    stopped_by = "timeout"
    tick = 0
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.perf_counter() - spawned < timeout_s:
                await asyncio.sleep(SAMPLE_EVERY_S)
                tick += 1
                if proc.poll() is not None:
                    raise RuntimeError(f"indexer exited early ({proc.returncode}); see {log_path}")
                sample = Sample(time.perf_counter())
                if first is None or tick % SCRAPE_EVERY_TICKS == 0:
                    if not await scrape(http, metrics_url, sample):
                        continue
                    counters = sample
                sample.consumed, sample.finished = counters.consumed, counters.finished
                sample.cpu_s, sample.rss_kib, sample.hwm_kib = read_proc(proc.pid)
                if first is None:
                    if sample.consumed == 0:
                        continue
                    first = sample
                    if fetching is not None:
                        fetching.set()
                sample.committed = await offsets.read()
                last = sample
                if timeline is not None and counters is sample:
                    timeline.append(_point(sample, first))
                if all(sample.committed.get(p, -1) >= end for p, end in topic.ends.items()):
                    stopped_by = "caught up"
                    break
                if time_limit_s and sample.at - first.at >= time_limit_s:
                    stopped_by = "time limit"
                    break
                done = sum(max(0, offset) for offset in sample.committed.values())
                if stop_after_records and done >= stop_after_records:
                    stopped_by = f"{stop_after_records:,} records committed"
                    break
            final = Sample(time.perf_counter())
            if await scrape(http, metrics_url, final):
                last.consumed, last.finished = final.consumed, final.finished
                last.documents = final.documents
                last.requests = final.requests
                last.freshness = final.freshness
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        exit_code, usage, hwm = await _reap(proc, STOP_TIMEOUT_S)
        committed = await offsets.read()
        await offsets.stop()
    result = _summary(
        topic,
        spawned,
        first,
        last,
        committed,
        usage,
        exit_code,
        stopped_by,
        max(hwm, last.hwm_kib),
    )
    if profiler is not None and profile_out is not None:
        await _wait_exit(profiler, 30.0)
        cpu = usage.ru_utime + usage.ru_stime
        summary = profile.summarize(profile_out, max(1, result["committed_records"]), cpu)
        if summary is not None:
            result["profile"] = summary
    return result


def _point(sample: Sample, first: Sample) -> dict[str, float]:
    return {
        "t": round(sample.at - first.at, 3),
        "committed": float(sum(sample.committed.values())),
        "documents": sample.documents,
        "requests": sample.requests,
        "limit": sample.limit,
        "in_flight": sample.in_flight,
    }


async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
        await asyncio.sleep(0.1)


def _summary(
    topic: ProducedTopic,
    spawned: float,
    first: Sample | None,
    last: Sample,
    committed: dict[int, int],
    usage: Any,
    exit_code: int,
    stopped_by: str,
    peak_rss_kib: int,
) -> dict[str, Any]:
    if first is None:
        raise RuntimeError("the indexer never fetched a record")
    done = sum(committed.values())
    window = last.at - first.at
    cpu_total = usage.ru_utime + usage.ru_stime
    return {
        "records": topic.records,
        "committed_records": done,
        "stopped_by": stopped_by,
        "exit_code": exit_code,
        "startup_s": round(first.at - spawned, 3),
        "window_s": round(window, 3),
        # first fetch seen -> every offset committed (or the time limit)
        "events_per_s": round(sum(last.committed.values()) / window, 1),
        # documents sent in bulk requests (coalescing sends fewer than records)
        "documents_sent": int(last.documents),
        "bulk_requests": int(last.requests),
        "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_sys_s": round(usage.ru_stime, 3),
        "cpu_us_per_event": round(cpu_total * 1e6 / max(1, done), 2),
        "cpu_window_us_per_event": round(
            (last.cpu_s - first.cpu_s)
            * 1e6
            / max(1, sum(last.committed.values()) - sum(first.committed.values())),
            2,
        ),
        "freshness_p99_s": quantile(last.freshness, 0.99),
        "freshness_p50_s": quantile(last.freshness, 0.5),
        "max_rss_mib": round(peak_rss_kib / 1024, 1),
        "rss_at_stop_mib": round(last.rss_kib / 1024, 1),
        # includes this parent's RSS at fork time (see the module docstring)
        "ru_maxrss_mib": round(usage.ru_maxrss / 1024, 1),
    }
