"""Command line, producer side: `produce`, `loadgen` and `outbox relay`.

`produce` sends JSON Lines events (file or stdin), validating each line and reporting the
bad ones by line number; `loadgen` emits generated events at a target rate and prints the
achieved rate, caller-side and enqueue-to-acknowledge latencies and rejections; `outbox
relay` publishes the transactional outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from typing import IO, Any

from prometheus_client import CollectorRegistry, start_http_server

from stream_indexer.devtools.loadgen import EventGenerator, LoadMix, run_load
from stream_indexer.producer.client import (
    DeliveryResult,
    ListingEventProducer,
    ProducerBackpressureError,
    ProducerDeliveryError,
)
from stream_indexer.producer.events import InvalidEventError, validate_json_line
from stream_indexer.producer.relay import OutboxRelay
from stream_indexer.settings import Settings, load_settings


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", help="overrides KAFKA__BOOTSTRAP_SERVERS")
    parser.add_argument("--topic", help="overrides KAFKA__TOPIC")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(
        {
            "kafka.bootstrap_servers": getattr(args, "bootstrap_servers", None),
            "kafka.topic": getattr(args, "topic", None),
            **extra,
        }
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    produce = subparsers.add_parser(
        "produce",
        help="send JSON Lines listing events from a file or stdin",
        description="Validate each line as a listing event and send the valid ones. "
        "Exits 1 when any line was rejected or not delivered.",
    )
    produce.add_argument("file", nargs="?", default="-", help="JSON Lines file ('-' = stdin)")
    _kafka_flags(produce)
    produce.set_defaults(handler=produce_command)

    loadgen = subparsers.add_parser(
        "loadgen",
        help="emit generated listing events and report emit latency",
        description="Prints the achieved against the requested rate, the caller-side latency "
        "of each emit call, the latency from that call to Kafka's acknowledgement, and the "
        "events refused because the queue was full. Exits 1 only when an accepted event was "
        "not delivered.",
    )
    loadgen.add_argument("--count", type=int, help="events to emit")
    loadgen.add_argument("--duration", type=float, help="seconds to run")
    loadgen.add_argument("--rate", type=float, help="target events/s (default: flat out)")
    loadgen.add_argument(
        "--mix",
        default="",
        help="weights, e.g. create=0.3,update=0.5,stale=0.05,delete=0.05,thin=0.1,"
        "poison=0.01,hot_key_ratio=0.2,hot_keys=10 (default: built-in mix)",
    )
    loadgen.add_argument("--seed", type=int, default=0)
    loadgen.add_argument("--first-id", type=int, default=1, help="first listing id to create")
    loadgen.add_argument("--json", action="store_true", help="print the report as JSON")
    _kafka_flags(loadgen)
    loadgen.set_defaults(handler=loadgen_command)

    outbox = subparsers.add_parser("outbox", help="transactional outbox tools")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="COMMAND")
    relay = outbox_sub.add_parser(
        "relay",
        help="publish pending outbox rows to Kafka until SIGTERM",
    )
    relay.add_argument("--batch-size", type=int, help="overrides OUTBOX__BATCH_SIZE")
    relay.add_argument(
        "--retain-sent",
        type=float,
        metavar="SECONDS",
        help="delete rows sent longer ago than this (default: keep them)",
    )
    relay.add_argument("--bootstrap-servers", help="overrides KAFKA__BOOTSTRAP_SERVERS")
    relay.set_defaults(handler=relay_command)


# -- produce -------------------------------------------------------------------------------


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    yield from stream


def produce_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.file == "-":
        return asyncio.run(_produce(settings, sys.stdin.buffer))
    with open(args.file, "rb") as stream:
        return asyncio.run(_produce(settings, stream))


async def _produce(settings: Settings, stream: IO[bytes]) -> int:
    problems: list[tuple[int, str]] = []
    deliveries: list[tuple[int, asyncio.Future[DeliveryResult]]] = []
    async with ListingEventProducer(settings) as producer:
        for number, line in enumerate(_lines(stream), start=1):
            if not line.strip():
                continue
            try:
                event = validate_json_line(line)
                deliveries.append((number, await producer.emit(event)))
            except (InvalidEventError, ProducerBackpressureError) as exc:
                problems.append((number, str(exc)))
                print(f"line {number}: {exc}", file=sys.stderr)
            if number % 256 == 0:
                await asyncio.sleep(0)
                if producer.pending >= settings.producer.max_pending // 2:
                    # a file can outrun Kafka: wait for room rather than refuse lines
                    with contextlib.suppress(ProducerDeliveryError):  # reported per line below
                        await producer.flush()
        with contextlib.suppress(ProducerDeliveryError):  # reported per line below
            await producer.flush()
    sent = 0
    for number, delivery in deliveries:
        error = delivery.exception()
        if error is None:
            sent += 1
        else:
            problems.append((number, str(error)))
            print(f"line {number}: not delivered: {error}", file=sys.stderr)
    failed = sorted(n for n, _ in problems)
    summary = f"sent {sent} event(s) to {settings.kafka.topic}"
    if failed:
        summary += f"; {len(failed)} line(s) failed: {', '.join(map(str, failed))}"
    print(summary)
    return 1 if failed else 0


# -- loadgen -------------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int | None, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()

    def __call__(self, done: int, elapsed: float) -> None:
        if not self.enabled:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = int(30 * done / self.total)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"\r[{bar}] {done}/{self.total} {rate:,.0f}/s"
        else:
            text = f"\r{done} events {elapsed:.1f}s {rate:,.0f}/s"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def loadgen_command(args: argparse.Namespace) -> int:
    if args.count is None and args.duration is None:
        print("stream-indexer loadgen: give --count and/or --duration", file=sys.stderr)
        return 2
    try:
        mix = LoadMix.parse(args.mix) if args.mix else LoadMix()
    except ValueError as exc:
        print(f"stream-indexer loadgen: {exc}", file=sys.stderr)
        return 2
    settings = _settings(args)
    generator = EventGenerator(mix, seed=args.seed, first_id=args.first_id)
    progress = _Progress(args.count, sys.stderr)

    async def main() -> dict[str, Any]:
        async with ListingEventProducer(settings) as producer:
            report = await run_load(
                producer,
                generator,
                count=args.count,
                duration_s=args.duration,
                rate=args.rate,
                progress=progress,
            )
        return report.summary()

    summary = asyncio.run(main())
    progress.close()
    if args.json:
        print(json.dumps(summary))
    else:
        requested = summary["requested_rate_per_s"]
        print(
            f"emitted {summary['emitted']} events in {summary['elapsed_s']} s: "
            f"{summary['rate_per_s']:,.0f}/s achieved, "
            + (f"{requested:,.0f}/s requested" if requested else "flat out")
            + f"; rejected (queue full) {summary['rejected']}, "
            f"undelivered {summary['delivery_failures']}"
        )
        for label, key in (("caller", "emit_latency_ms"), ("ack", "ack_latency_ms")):
            figures = " ".join(f"{name}={value}" for name, value in summary[key].items())
            print(f"{label} latency ms: {figures}")
    return 1 if summary["delivery_failures"] else 0


# -- outbox relay --------------------------------------------------------------------------


def relay_command(args: argparse.Namespace) -> int:
    from stream_indexer.observability.logging_setup import configure_logging

    settings = _settings(args, **{"outbox.batch_size": args.batch_size})
    configure_logging(settings.log.level, settings.log.format)  # masks secrets, as `run` does
    registry = CollectorRegistry()
    if settings.metrics.enabled:
        start_http_server(settings.metrics.port, addr=settings.metrics.host, registry=registry)
    return asyncio.run(_relay(settings, registry, args.retain_sent))


async def _relay(settings: Settings, registry: CollectorRegistry, retain_sent: float | None) -> int:
    relay = OutboxRelay(settings, registry=registry, retain_sent_s=retain_sent)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.request_stop)
    async with relay:
        print("outbox relay running", file=sys.stderr, flush=True)
        await relay.wait()
    return 0


__all__ = ["register"]
