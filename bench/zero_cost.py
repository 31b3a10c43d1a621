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
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.indexer_proc import run_indexer
from bench.workload import ProducedTopic
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.devtools.devstack._proc import free_port

READY_TIMEOUT_S = 30.0


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
    endpoints: StackEndpoints, topic: ProducedTopic, url: str, *, group_id: str, index: str
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.partition_baseline"]
    command += ["--bootstrap", endpoints.kafka_bootstrap, "--topic", topic.name]
    command += ["--group-id", group_id, "--url", url, "--index", index]
    command += ["--records", str(topic.records)]
    proc = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"per-partition baseline failed ({proc.returncode})")
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


async def zero_cost(
    endpoints: StackEndpoints,
    topic: ProducedTopic,
    *,
    rid: str,
    logs: Path,
    extra_env: dict[str, str] | None = None,
    profile_out: Path | None = None,
) -> dict[str, Any]:
    """Indexer then baseline over `topic`, both against one zero-cost sink."""
    sink, url = await start_sink(logs / "zero-cost-sink.log")
    try:
        indexer = await run_indexer(
            dataclasses.replace(endpoints, opensearch_url=url),
            topic,
            group_id=f"bench-{rid}-zc-indexer",
            index=f"bench-{rid}-zc-indexer",
            log_path=logs / "indexer-zero-cost.log",
            extra_env=extra_env,
            profile_out=profile_out,
        )
        baseline = await run_baseline(
            endpoints, topic, url, group_id=f"bench-{rid}-zc-base", index=f"bench-{rid}-zc-base"
        )
    finally:
        sink.terminate()
        await sink.wait()
    rate = indexer["events_per_s"] / baseline["events_per_s"]
    return {
        "records": topic.records,
        "indexer": indexer,
        "baseline": baseline,
        "rate_vs_baseline": round(rate, 3),
        "cpu_window_vs_baseline": round(
            indexer["cpu_window_us_per_event"] / baseline["cpu_window_us_per_event"], 3
        ),
    }
