"""Benchmark step `zero_cost`: the indexer and the per-partition baseline against a sink that
costs nothing (bench/zero_cost_sink.py), so that only the consumers' own code is judged.

Both read the same fresh backlog (by default one listing per ten events, few overwrites
inside a batch) through their own consumer group, one after the other, against one sink
process. The indexer is measured as in the end-to-end step (bench/indexer_proc.py: first
fetch until all committed, CPU while processing from /proc and over its life from rusage);
the baseline measures itself the same way and prints its figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.indexer_proc import run_indexer
from bench.workload import ProducedTopic
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.devtools.devstack._proc import free_port

READY_TIMEOUT_S = 30.0
#: the pooled validating baseline's worker processes: one per core
POOL_PROCESSES = os.cpu_count() or 1


async def start_sink(
    log_path: Path, *, elastic_product: bool = False
) -> tuple[asyncio.subprocess.Process, str]:
    """The sink in its own process (its CPU must not land on either consumer); its URL."""
    command = [sys.executable, "-m", "bench.zero_cost_sink", "--port", str(free_port())]
    if elastic_product:
        command.append("--elastic-product")
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
    if not line:
        raise RuntimeError(f"zero-cost sink did not start; see {log_path}")
    return proc, str(orjson.loads(line)["url"])


async def run_baseline(
    endpoints: StackEndpoints,
    topic: ProducedTopic,
    url: str,
    *,
    group_id: str,
    index: str,
    validate: bool = False,
    processes: int = 0,
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.partition_baseline"]
    if validate:
        command.append("--validate")
    if processes:
        command += ["--processes", str(processes)]
    command += ["--bootstrap", endpoints.kafka_bootstrap, "--topic", topic.name]
    command += ["--group-id", group_id, "--url", url, "--index", index]
    command += ["--records", str(topic.records)]
    counted = fetch_bytes_file(f"{group_id}.fetched.json")
    env = {**os.environ, **counting_env(counted)}
    proc = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, env=env)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"per-partition baseline failed ({proc.returncode})")
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return {**result, **fetched_bytes(counted)}


#: `fetch_bytes/sitecustomize.py`: on a child's PYTHONPATH, it counts the fetched bytes
FETCH_COUNTER = Path(__file__).resolve().parent / "fetch_bytes"


def fetch_bytes_file(name: str) -> Path:
    """A fresh file for one child's fetch counts."""
    path = Path(tempfile.gettempdir()) / f"stream-indexer-bench-{os.getpid()}-{name}"
    path.unlink(missing_ok=True)
    return path


def counting_env(out: Path) -> dict[str, str]:
    """The environment entries that make a Python child count its fetched bytes into `out`."""
    path = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": os.pathsep.join([str(FETCH_COUNTER), *([path] if path else [])]),
        "BENCH_FETCH_BYTES_OUT": str(out),
    }


def fetched_bytes(out: Path) -> dict[str, Any]:
    """What the child counted (nothing when it wrote nothing, e.g. it was killed)."""
    try:
        counts: dict[str, Any] = orjson.loads(out.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    out.unlink(missing_ok=True)
    return counts


async def zero_cost(
    endpoints: StackEndpoints,
    topic: ProducedTopic,
    *,
    rid: str,
    logs: Path,
    pairs: int = 1,
    extra_env: dict[str, str] | None = None,
    profile_out: Path | None = None,
) -> dict[str, Any]:
    """`pairs` x (indexer, baseline, validating baseline, the same validating in a pool of
    one process per core) over `topic`, each through its own consumer group, all against one
    zero-cost sink. On a shared 2-core machine one run of either swings by a third, so the
    figures compared are medians over alternated runs (the first indexer run is the profiled
    one when `profile_out` is given)."""
    sink, url = await start_sink(logs / "zero-cost-sink.log")
    indexers: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    validating: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    try:
        for pair in range(pairs):
            counted = fetch_bytes_file(f"{rid}-zc-indexer-{pair}.fetched.json")
            run = await run_indexer(
                dataclasses.replace(endpoints, opensearch_url=url),
                topic,
                group_id=f"bench-{rid}-zc-indexer-{pair}",
                index=f"bench-{rid}-zc-indexer-{pair}",
                log_path=logs / f"indexer-zero-cost-{pair}.log",
                extra_env={**counting_env(counted), **(extra_env or {})},
                profile_out=profile_out if pair == 0 else None,
            )
            indexers.append({**run, **fetched_bytes(counted)})
            baselines.append(
                await run_baseline(
                    endpoints,
                    topic,
                    url,
                    group_id=f"bench-{rid}-zc-base-{pair}",
                    index=f"bench-{rid}-zc-base-{pair}",
                )
            )
            validating.append(
                await run_baseline(
                    endpoints,
                    topic,
                    url,
                    group_id=f"bench-{rid}-zc-valid-{pair}",
                    index=f"bench-{rid}-zc-valid-{pair}",
                    validate=True,
                )
            )
            pooled.append(
                await run_baseline(
                    endpoints,
                    topic,
                    url,
                    group_id=f"bench-{rid}-zc-pooled-{pair}",
                    index=f"bench-{rid}-zc-pooled-{pair}",
                    validate=True,
                    processes=POOL_PROCESSES,
                )
            )
    finally:
        sink.terminate()
        await sink.wait()
    indexer, baseline = _median_run(indexers), _median_run(baselines)
    return {
        "records": topic.records,
        "pairs": pairs,
        "indexer": indexer,
        "baseline": baseline,
        "validating_baseline": _median_run(validating),
        "indexer_runs": indexers,
        "baseline_runs": baselines,
        "validating_baseline_runs": validating,
        "pooled_validating_baseline": _median_run(pooled),
        "pooled_validating_baseline_runs": pooled,
        # medians of the rounds' ratios: each round ran back to back, under the same load
        "rate_vs_baseline": _median_ratio(indexers, baselines, "events_per_s"),
        "cpu_window_vs_baseline": _median_ratio(indexers, baselines, "cpu_window_us_per_event"),
        "rate_vs_validating_baseline": _median_ratio(indexers, validating, "events_per_s"),
        "cpu_window_vs_validating_baseline": _median_ratio(
            indexers, validating, "cpu_window_us_per_event"
        ),
        # what validating every event, in one process, leaves of the baseline's rate (a
        # consumer that does nothing else; the pool below spreads the same work over cores)
        "validating_rate_vs_baseline": _median_ratio(validating, baselines, "events_per_s"),
        # the same with the validator spread over the machine's cores (CPU of all processes)
        "pooled_validating_rate_vs_baseline": _median_ratio(pooled, baselines, "events_per_s"),
        "pooled_validating_cpu_vs_baseline": _median_ratio(
            pooled, baselines, "cpu_window_us_per_event"
        ),
    }


def _median_ratio(runs: list[dict[str, Any]], others: list[dict[str, Any]], figure: str) -> float:
    """The median over the pairs of `figure` of `runs` / `figure` of `others`."""
    return round(
        statistics.median(
            float(run[figure]) / float(other[figure])
            for run, other in zip(runs, others, strict=True)
        ),
        3,
    )


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median events/s (its own CPU and RSS with it), plus the median CPU
    per event over all runs and the range of events/s."""
    ordered = sorted(runs, key=lambda run: float(run["events_per_s"]))
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["cpu_window_us_per_event"] = round(
        statistics.median(float(run["cpu_window_us_per_event"]) for run in runs), 2
    )
    median["events_per_s_range"] = [ordered[0]["events_per_s"], ordered[-1]["events_per_s"]]
    return median
