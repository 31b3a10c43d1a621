"""Benchmark step `external`: other consumers on the same backlogs, for the comparison table.

Two systems nobody here wrote, each on the end-to-end backlog into a fresh osmem process
(the project's index settings and strict mapping) and on the zero-cost sink's backlog
against that sink:

- a minimal Node consumer (bench/node/consumer.js, kafkajs `eachBatch` -> one `_bulk` per
  partition batch with `version_type=external_gte` -> commit), installed with npm into
  bench/results/cache/node;
- Quix Streams with its Elasticsearch sink, default options (bench/quix_consumer.py), in
  its own virtualenv under bench/results/cache (quixstreams is no dependency of the project).

Each runs as a child process measured as the indexer is (bench/indexer_proc.py): from its
first fetch (the line it prints then) until the group has committed every offset (read from
the broker), CPU of the process from /proc/<pid>/stat over that window and over its whole
life (rusage at exit), peak RSS from VmHWM; documents sent are the child's own count. After
an osmem run every listing's document is compared with the plan (newest version, deleted or
not). Either system is skipped, with the reason, when its runtime or install is missing
(`make bench` does not fail for it); a run that fails records its error.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import osadmin, report
from bench.index_check import index_check
from bench.indexer_proc import SAMPLE_EVERY_S, STOP_TIMEOUT_S, OffsetReader, _reap
from bench.procstat import read_proc
from bench.workload import ProducedTopic
from bench.zero_cost import start_sink
from stream_indexer.devtools.demo import DemoPlan
from stream_indexer.devtools.devstack import OsmemProcess, StackEndpoints
from stream_indexer.opensearch.mapping import index_body

HERE = Path(__file__).resolve().parent
CACHE = HERE / "results" / "cache"
QUIX_REQUIREMENT = "quixstreams[elasticsearch]==3.28.1"
INSTALL_TIMEOUT_S = 600.0
RUN_TIMEOUT_S = 1200.0
FIRST_FETCH = b'"first_fetch"'
Progress = Callable[[str], None]
#: (sink URL, index, group id, topic) -> the consumer's command line
Command = Callable[[str, str, str, str], list[str]]


def _run(command: list[str], cwd: Path, log: Path, timeout_s: float) -> str | None:
    """Run an install command; None if it worked, else why not (the log's last line)."""
    with log.open("ab") as out:
        try:
            done = subprocess.run(
                command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command[:3])}: {exc}"
    if done.returncode == 0:
        return None
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return f"{' '.join(command[:3])} exited {done.returncode}: {tail[0]}"


def setup_node(log: Path) -> tuple[list[str], Path] | str:
    """(node command, its folder) with kafkajs installed, or the reason it cannot run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node or npm is not installed"
    folder = CACHE / "node"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "consumer.js"):
        shutil.copyfile(HERE / "node" / name, folder / name)
    stamp = folder / "node_modules" / ".installed-package.json"
    wanted = (HERE / "node" / "package.json").read_bytes()
    if not stamp.exists() or stamp.read_bytes() != wanted:
        install = [npm, "install", "--no-audit", "--no-fund", "--no-package-lock"]
        failed = _run(install, folder, log, INSTALL_TIMEOUT_S)
        if failed:
            return failed
        stamp.write_bytes(wanted)
    check = [node, "-e", "require('kafkajs'); require('kafkajs-lz4')"]
    failed = _run(check, folder, log, 60.0)
    return failed or ([node, str(folder / "consumer.js")], folder)


def setup_quix(log: Path) -> Path | str:
    """The Python of a virtualenv holding Quix Streams, or the reason it cannot run."""
    venv = CACHE / "quix-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == QUIX_REQUIREMENT:
        return python
    failed = _run([sys.executable, "-m", "venv", str(venv)], CACHE, log, 120.0)
    pip = [str(python), "-m", "pip", "install", "--quiet", QUIX_REQUIREMENT]
    failed = failed or _run(pip, CACHE, log, INSTALL_TIMEOUT_S)
    if failed:
        return failed
    stamp.write_text(QUIX_REQUIREMENT)
    return python


async def measure(
    command: list[str],
    *,
    cwd: Path,
    bootstrap: str,
    topic: ProducedTopic,
    group_id: str,
    log_path: Path,
) -> dict[str, Any]:
    """Run a consumer over `topic`'s backlog until its group committed all of it."""
    offsets = OffsetReader(bootstrap, group_id, topic.name, topic.ends)
    await offsets.start()
    out_path = log_path.with_suffix(".out")
    proc = _spawn(command, cwd, out_path, log_path)
    spawned = time.perf_counter()
    first: tuple[float, float, int] | None = None
    last: tuple[float, float, int] | None = None
    hwm = 0
    try:
        while last is None:
            await asyncio.sleep(SAMPLE_EVERY_S)
            if proc.poll() is not None:
                raise RuntimeError(f"exited early ({proc.returncode}): {_tail(log_path, 1)}")
            if time.perf_counter() - spawned > RUN_TIMEOUT_S:
                raise RuntimeError(f"did not commit everything in {RUN_TIMEOUT_S:g} s")
            if first is None and FIRST_FETCH not in out_path.read_bytes():
                continue
            now = time.perf_counter()
            cpu, _rss, peak = read_proc(proc.pid)
            hwm = max(hwm, peak)
            committed = await offsets.read()
            done = sum(committed.values())
            if first is None:
                first = (now, cpu, done)
            if all(committed.get(p, -1) >= end for p, end in topic.ends.items()):
                last = (now, cpu, done)
    finally:
        try:
            if proc.poll() is None:  # else it failed, and poll() has reaped it already
                proc.send_signal(signal.SIGTERM)
                exit_code, usage, peak = await _reap(proc, STOP_TIMEOUT_S)
        finally:
            await offsets.stop()
    counters = _counters(out_path)
    window, cpu_window = last[0] - first[0], last[1] - first[1]
    records = last[2] - first[2]
    cpu_total = usage.ru_utime + usage.ru_stime
    return {
        "records": topic.records,
        "exit_code": exit_code,
        "startup_s": round(first[0] - spawned, 3),
        "window_s": round(window, 3),
        "events_per_s": round(last[2] / window, 1),
        "documents_sent": counters.get("docs_sent"),
        "bulk_requests": counters.get("bulk_requests"),
        "skipped_records": counters.get("skipped"),
        "cpu_window_us_per_event": round(cpu_window * 1e6 / max(1, records), 2),
        "cpu_us_per_event": round(cpu_total * 1e6 / max(1, last[2]), 2),
        "max_rss_mib": round(max(hwm, peak) / 1024, 1),
    }


def _spawn(
    command: list[str], cwd: Path, out_path: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """stdout (the first-fetch line, the counters) and stderr to files, read while it runs."""
    with out_path.open("wb") as out, log_path.open("ab") as err:
        return subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(line.strip()[:300] for line in text[-lines:]) or "no output"


def _counters(out_path: Path) -> dict[str, Any]:
    """The JSON line the child printed as it stopped (empty if it printed none)."""
    for line in reversed(out_path.read_bytes().splitlines()):
        if line.startswith(b"{") and FIRST_FETCH not in line:
            try:
                found: dict[str, Any] = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            return found
    return {}


async def _on_osmem(
    name: str,
    command: Command,
    *,
    cwd: Path,
    endpoints: StackEndpoints,
    topic: ProducedTopic,
    plan: DemoPlan,
    rid: str,
    logs: Path,
    create_index: bool,
) -> dict[str, Any]:
    server = OsmemProcess(logs / f"osmem-external-{name}.log")
    url = await asyncio.to_thread(server.start)
    index, group = f"bench-{rid}-{name}", f"bench-{rid}-{name}-osmem"
    try:
        if create_index:
            async with osadmin.session() as http:
                await osadmin.create_index(http, url, index)
        result = await measure(
            command(url, index, group, topic.name),
            cwd=cwd,
            bootstrap=endpoints.kafka_bootstrap,
            topic=topic,
            group_id=group,
            log_path=logs / f"external-{name}-osmem.log",
        )
        result["index_check"] = await index_check(url, index, plan)
    finally:
        await asyncio.to_thread(server.stop)
    return result


async def _on_sink(
    name: str,
    command: Command,
    *,
    cwd: Path,
    endpoints: StackEndpoints,
    topic: ProducedTopic,
    rid: str,
    logs: Path,
    elastic_product: bool,
) -> dict[str, Any]:
    sink, url = await start_sink(
        logs / f"zero-cost-sink-{name}.log", elastic_product=elastic_product
    )
    try:
        return await measure(
            command(url, f"bench-{rid}-{name}-zc", f"bench-{rid}-{name}-zc", topic.name),
            cwd=cwd,
            bootstrap=endpoints.kafka_bootstrap,
            topic=topic,
            group_id=f"bench-{rid}-{name}-zc",
            log_path=logs / f"external-{name}-zero-cost.log",
        )
    finally:
        sink.terminate()
        await sink.wait()


async def _guarded(run: Any) -> dict[str, Any]:
    """A failed run is recorded with its error, not raised: the other rows still count."""
    try:
        result: dict[str, Any] = await run
    except Exception as exc:  # any failure of a foreign consumer is a finding
        return {"error": str(exc)}
    return result


async def external(
    endpoints: StackEndpoints,
    *,
    e2e_topic: ProducedTopic | None,
    e2e_plan: DemoPlan | None,
    zero_cost_topic: ProducedTopic | None,
    rid: str,
    logs: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Node kafkajs and Quix Streams, each on osmem and on the zero-cost sink."""
    report.results_dir(CACHE.parent)
    CACHE.mkdir(parents=True, exist_ok=True)
    mapping = CACHE / "index_body.json"
    mapping.write_bytes(orjson.dumps(index_body()))
    boot = endpoints.kafka_bootstrap
    out: dict[str, Any] = {}

    progress("external: installing the Node consumer (npm)")
    node = await asyncio.to_thread(setup_node, logs / "external-node-install.log")
    if isinstance(node, str):
        out["node"] = {"skipped": node}
    else:
        base, folder = node

        def node_command(url: str, index: str, group: str, topic: str) -> list[str]:
            return [*base, boot, topic, group, url, index, str(mapping)]

        out["node"] = await _both(
            "node",
            node_command,
            folder,
            endpoints,
            e2e_topic,
            e2e_plan,
            zero_cost_topic,
            rid=rid,
            logs=logs,
            progress=progress,
            create_index=True,
            elastic_product=False,
        )

    progress("external: installing Quix Streams into its own virtualenv")
    quix = await asyncio.to_thread(setup_quix, logs / "external-quix-install.log")
    if isinstance(quix, str):
        out["quix"] = {"skipped": quix}
    else:
        state = CACHE / "quix-state"

        def quix_command(url: str, index: str, group: str, topic: str) -> list[str]:
            command = [str(quix), str(HERE / "quix_consumer.py"), "--bootstrap", boot]
            command += ["--topic", topic, "--group-id", group, "--url", url]
            command += ["--index", index, "--mapping", str(mapping)]
            return [*command, "--state-dir", str(state / group)]

        out["quix"] = await _both(
            "quix",
            quix_command,
            CACHE,
            endpoints,
            e2e_topic,
            e2e_plan,
            zero_cost_topic,
            rid=rid,
            logs=logs,
            progress=progress,
            create_index=False,
            elastic_product=True,
        )
    return out


async def _both(
    name: str,
    command: Command,
    cwd: Path,
    endpoints: StackEndpoints,
    e2e_topic: ProducedTopic | None,
    e2e_plan: DemoPlan | None,
    zero_cost_topic: ProducedTopic | None,
    *,
    rid: str,
    logs: Path,
    progress: Progress,
    create_index: bool,
    elastic_product: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if e2e_topic is not None and e2e_plan is not None:
        topic, plan = e2e_topic, e2e_plan
        progress(f"external: {name} on a fresh osmem over {topic.records:,} records")
        out["osmem"] = await _guarded(
            _on_osmem(
                name,
                command,
                cwd=cwd,
                endpoints=endpoints,
                topic=topic,
                plan=plan,
                rid=rid,
                logs=logs,
                create_index=create_index,
            )
        )
    if zero_cost_topic is not None:
        topic = zero_cost_topic
        progress(f"external: {name} against the zero-cost sink over {topic.records:,} records")
        out["zero_cost"] = await _guarded(
            _on_sink(
                name,
                command,
                cwd=cwd,
                endpoints=endpoints,
                topic=topic,
                rid=rid,
                logs=logs,
                elastic_product=elastic_product,
            )
        )
    return out


__all__ = ["external", "measure", "setup_node", "setup_quix"]
