"""`stream-indexer dev`: the whole pipeline on the embedded stack, no Docker needed.

Starts tansu (Kafka protocol), osmem-server (OpenSearch API) and embedded PostgreSQL from
the installed wheels, creates the topics, the index and the DLQ table, runs the indexer
in-process, and with `--demo N` produces N realistic events, waits until the group has
caught up and prints a summary. Ctrl-C stops everything it started. A failure to start
(the stack, topics, migrations, the indexer) is one line on stderr and exit code 3.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dev", help="run the indexer on an embedded local stack (Kafka, OpenSearch, Postgres)"
    )
    parser.add_argument("--demo", type=int, default=0, metavar="N", help="produce N demo events")
    parser.add_argument(
        "--follow", action="store_true", help="keep serving after the demo (until Ctrl-C)"
    )
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topic")
    parser.add_argument(
        "--metrics-port", type=int, default=9108, help="metrics port (a free one if taken)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the demo to catch up"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stream_indexer.app.startup_errors import StartupFailedError, Step, report, startup_step
    from stream_indexer.devtools.devstack.stack import EmbeddedStack
    from stream_indexer.observability.logging_setup import configure_logging
    from stream_indexer.settings import load_settings

    load_settings()  # bad STREAM_INDEXER_* values exit 2 before anything is started
    configure_logging("INFO", "console")
    print("starting the embedded stack (tansu, osmem-server, PostgreSQL)...", flush=True)
    stack = EmbeddedStack()
    try:
        with startup_step(Step.DEV_STACK):
            endpoints = stack.start()
        print(f"  kafka      {endpoints.kafka_bootstrap}")
        print(f"  opensearch {endpoints.opensearch_url}")
        print(f"  postgres   {endpoints.postgres_dsn}", flush=True)
        return asyncio.run(_dev(args, endpoints))
    except StartupFailedError as exc:
        return report(exc)
    finally:
        stack.stop()


async def _dev(args: argparse.Namespace, endpoints: Any) -> int:
    from stream_indexer.app.migrate import migrate_up
    from stream_indexer.app.runner import install_stop_signals, prepare_process
    from stream_indexer.app.service import IndexerService
    from stream_indexer.app.startup_errors import Step, startup_step
    from stream_indexer.app.topics import ensure_topic
    from stream_indexer.devtools.demo import plan_events, produce_records
    from stream_indexer.observability.http_server import ObservabilityServer
    from stream_indexer.observability.metrics import Metrics
    from stream_indexer.settings import load_settings

    settings = load_settings(
        {
            "kafka.bootstrap_servers": endpoints.kafka_bootstrap,
            "kafka.enable_idempotence": False,
            "kafka.session_timeout_ms": 6000,
            "opensearch.hosts": endpoints.opensearch_url,
            "postgres.dsn": endpoints.postgres_dsn,
            "log.format": "console",
        }
    )
    with startup_step(Step.DLQ_TOPIC):
        await ensure_topic(
            endpoints.kafka_bootstrap, settings.kafka.topic, partitions=args.partitions
        )
        await ensure_topic(
            endpoints.kafka_bootstrap, settings.dlq_topic, partitions=settings.dlq.topic_partitions
        )
    with startup_step(Step.POSTGRES):
        await migrate_up(endpoints.postgres_dsn)
    prepare_process()
    metrics = Metrics()
    service = IndexerService(settings, metrics)
    install_stop_signals(asyncio.get_running_loop(), service.request_stop)
    http = ObservabilityServer(
        "127.0.0.1", _free_port(args.metrics_port), metrics.registry, service
    )
    with startup_step(Step.METRICS):
        await http.start()
    metrics_url = f"http://127.0.0.1:{http.port}/metrics"
    print(f"  metrics    {metrics_url}", flush=True)
    try:
        await service.start()
        if args.demo:
            plan = plan_events(args.demo)
            print(
                f"producing {len(plan.records)} demo events ({plan.deletes} deletes, "
                f"{plan.out_of_order} out of order, {plan.duplicates} duplicates, "
                f"{plan.poison} poison) over {len(plan.expected)} listings...",
                flush=True,
            )
            started = time.monotonic()
            ends = await produce_records(
                endpoints.kafka_bootstrap, settings.kafka.topic, plan.records
            )
            caught_up = await _wait_caught_up(service, settings.kafka.topic, ends, args.timeout)
            elapsed = time.monotonic() - started
            _print_summary(metrics, len(plan.records), elapsed, metrics_url, caught_up)
            if not caught_up:
                return 1
        if args.follow or not args.demo:
            print("serving; Ctrl-C to stop", flush=True)
            await service.run_until_stopped()
    finally:
        await service.stop()
        await http.stop()
    return 0


async def _wait_caught_up(service: Any, topic: str, ends: dict[int, int], wait_s: float) -> bool:
    """Wait until the committed offset of every produced partition reaches its end."""
    from aiokafka import TopicPartition

    deadline = time.monotonic() + wait_s
    targets = {TopicPartition(topic, p): end for p, end in ends.items()}
    while time.monotonic() < deadline:
        committed = service.committed_offsets()
        if all(committed.get(tp, -1) >= end for tp, end in targets.items()):
            return True
        if service.stop_requested:
            return False
        await asyncio.sleep(0.1)
    return False


def _print_summary(
    metrics: Any, events: int, elapsed: float, metrics_url: str, caught_up: bool
) -> None:
    def total(name: str, **labels: str) -> int:
        value = metrics.registry.get_sample_value(name, labels or None)
        return int(value or 0)

    indexed = total("stream_indexer_items_total", result="indexed")
    deleted = total("stream_indexer_items_total", result="deleted")
    stale = total("stream_indexer_items_total", result="stale")
    dead = total("stream_indexer_items_total", result="dead_lettered")
    state = "caught up" if caught_up else "DID NOT catch up before the timeout"
    print(
        f"\n{state} in {elapsed:.1f} s\n"
        f"  events         {events}\n"
        f"  indexed        {indexed}\n"
        f"  deleted        {deleted}\n"
        f"  stale-skipped  {stale}\n"
        f"  dead-lettered  {dead}\n"
        f"  throughput     {events / elapsed if elapsed else 0:,.0f} events/s\n"
        f"  metrics        {metrics_url}",
        file=sys.stdout,
        flush=True,
    )


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
