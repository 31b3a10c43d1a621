"""Producer side, for testing and benchmarks: generate realistic listing events and emit them.

`EventGenerator` yields a reproducible (seeded) stream of operations with a configurable mix:
creates, updates, out-of-order (stale) versions, deletes, thin events, poison records and a
hot-key skew; the listings and poison records come from `synthetic`, as the demo's do.
`run_load` emits them through a `ListingEventProducer` at a target rate (or as fast as
possible) and measures, separately, how long each `emit_*_nowait` call kept the caller and
how long each event took from that call to Kafka's acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from stream_indexer.devtools.synthetic import POISON_KINDS, listing_data, poison_value
from stream_indexer.producer.client import (
    DeliveryResult,
    ListingEventProducer,
    ProducerBackpressureError,
    ProducerDeliveryError,
)

OpKind = Literal["create", "update", "stale", "delete", "thin", "poison"]
KINDS: tuple[OpKind, ...] = ("create", "update", "stale", "delete", "thin", "poison")


@dataclass(frozen=True)
class LoadMix:
    """Relative weights of each kind of event, plus the hot-key skew.

    `hot_key_ratio` of the events that touch an existing listing pick one of the first
    `hot_keys` listings created (a few very busy listings, as on a real marketplace).
    """

    create: float = 0.3
    update: float = 0.5
    stale: float = 0.05
    delete: float = 0.05
    thin: float = 0.1
    poison: float = 0.0
    hot_key_ratio: float = 0.0
    hot_keys: int = 10

    def __post_init__(self) -> None:
        weights = [getattr(self, k) for k in KINDS]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("mix weights must be >= 0 and not all zero")
        if not 0 <= self.hot_key_ratio <= 1 or self.hot_keys < 1:
            raise ValueError("hot_key_ratio must be in [0, 1] and hot_keys >= 1")

    @classmethod
    def parse(cls, text: str) -> LoadMix:
        """`"create=0.3,update=0.5,poison=0.01,hot_key_ratio=0.2"`; unnamed kinds weigh 0."""
        values: dict[str, Any] = dict.fromkeys(KINDS, 0.0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in {*KINDS, "hot_key_ratio", "hot_keys"}:
                raise ValueError(f"bad mix entry {part!r} (expected kind=weight)")
            values[name] = int(raw) if name == "hot_keys" else float(raw)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Op:
    """One thing to emit: an index/delete call, or raw bytes for a poison record."""

    kind: OpKind
    listing_id: int
    version: int = 0
    listing: dict[str, Any] | None = None
    raw: bytes = b""


class EventGenerator:
    """A seeded stream of `Op`s; versions strictly increase per listing except `stale` ones."""

    def __init__(self, mix: LoadMix | None = None, *, seed: int = 0, first_id: int = 1) -> None:
        self.mix = mix or LoadMix()
        self._rng = random.Random(seed)
        self._kinds = list(KINDS)
        self._weights = [getattr(self.mix, k) for k in KINDS]
        self._next_id = first_id
        self._live: list[int] = []
        self._latest: dict[int, int] = {}
        self._clock = datetime(2025, 1, 1, tzinfo=UTC)

    @property
    def latest_versions(self) -> dict[int, int]:
        """Highest version emitted per listing (what the index must end up holding)."""
        return dict(self._latest)

    def _pick_existing(self) -> int | None:
        if not self._live:
            return None
        if self._rng.random() < self.mix.hot_key_ratio:
            return self._live[self._rng.randrange(min(self.mix.hot_keys, len(self._live)))]
        return self._live[self._rng.randrange(len(self._live))]

    def _bump(self, listing_id: int) -> int:
        version = self._latest.get(listing_id, 0) + self._rng.randint(1, 5)
        self._latest[listing_id] = version
        return version

    def listing(self, listing_id: int) -> dict[str, Any]:
        """A realistic listing snapshot (`synthetic.listing_data`), a little later each time."""
        self._clock += timedelta(milliseconds=self._rng.randint(1, 50))
        return listing_data(self._rng, listing_id, self._clock)

    def __iter__(self) -> Iterator[Op]:
        while True:
            yield self.next()

    def take(self, count: int) -> list[Op]:
        """`count` operations generated up front (benchmarks keep generation out of timing)."""
        return [self.next() for _ in range(count)]

    def next(self) -> Op:
        kind: OpKind = self._rng.choices(self._kinds, self._weights)[0]
        existing = None if kind in ("create", "poison") else self._pick_existing()
        if kind == "poison":
            return self._poison()
        if existing is None or kind == "create":
            listing_id = self._next_id
            self._next_id += 1
            self._live.append(listing_id)
            return Op("create", listing_id, self._bump(listing_id), self.listing(listing_id))
        if kind == "stale":
            stale_version = self._rng.randint(0, max(self._latest[existing] - 1, 0))
            return Op("stale", existing, stale_version, self.listing(existing))
        if kind == "delete":
            self._live.remove(existing)
            return Op("delete", existing, self._bump(existing))
        snapshot = None if kind == "thin" else self.listing(existing)
        return Op(kind, existing, self._bump(existing), snapshot)

    def _poison(self) -> Op:
        listing_id = self._next_id + 10_000_000
        raw = poison_value(listing_id, self._rng.randrange(POISON_KINDS))
        return Op("poison", listing_id, raw=raw)


@dataclass
class LoadReport:
    """What `run_load` did: counts, requested and achieved rate, and two latencies in seconds.

    `latencies_s` is how long each emit call kept the caller (validate, serialize, enqueue);
    `ack_latencies_s` runs from the start of that call until Kafka acknowledged the event.
    """

    emitted: int = 0
    rejected: int = 0
    delivery_failures: int = 0
    elapsed_s: float = 0.0
    requested_rate: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    ack_latencies_s: list[float] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.emitted / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_s, q)

    def ack_percentile(self, q: float) -> float:
        return percentile(self.ack_latencies_s, q)

    def summary(self) -> dict[str, Any]:
        return {
            "emitted": self.emitted,
            "rejected": self.rejected,
            "delivery_failures": self.delivery_failures,
            "elapsed_s": round(self.elapsed_s, 3),
            "requested_rate_per_s": self.requested_rate,
            "rate_per_s": round(self.rate, 1),
            "emit_latency_ms": _percentiles_ms(self.latencies_s),
            "ack_latency_ms": _percentiles_ms(self.ack_latencies_s),
            "by_kind": dict(sorted(self.by_kind.items())),
        }


def _percentiles_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        name: round(percentile(ordered, q, presorted=True) * 1000, 4)
        for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100))
    }


def percentile(values: list[float], q: float, *, presorted: bool = False) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = values if presorted else sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _emit(producer: ListingEventProducer, op: Op) -> asyncio.Future[DeliveryResult]:
    if op.kind == "poison":
        return producer.send_raw_nowait(str(op.listing_id).encode(), op.raw)
    if op.kind == "delete":
        return producer.emit_delete_nowait(op.listing_id, op.version)
    assert op.listing is not None or op.kind == "thin"
    return producer.emit_index_nowait(
        op.listing or {"id": op.listing_id}, op.version, thin=op.kind == "thin"
    )


async def run_load(
    producer: ListingEventProducer,
    ops: Iterable[Op],
    *,
    count: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> LoadReport:
    """Emit `ops` until `count` events, `duration_s` seconds or the end of `ops`.

    Paced at `rate` events/s (None: flat out). The caller-side figure times only the
    `emit_*_nowait` call; a done-callback on its future takes the acknowledgement time. A
    refused event (full queue) counts as rejected; the report waits for every accepted one.
    """
    report = LoadReport(requested_rate=rate)
    perf = time.perf_counter
    acks = report.ack_latencies_s
    outstanding = 0  # accepted, outcome not known yet (no list of futures: less for the GC)
    all_known = asyncio.Event()

    def acknowledged(started: float, fut: asyncio.Future[DeliveryResult]) -> None:
        nonlocal outstanding
        if fut.cancelled() or fut.exception() is not None:
            report.delivery_failures += 1
        else:
            acks.append(perf() - started)
        outstanding -= 1
        if outstanding == 0:
            all_known.set()

    start = perf()
    stop_at = start + duration_s if duration_s is not None else float("inf")
    interval = 1.0 / rate if rate else 0.0
    i = 0
    source = iter(ops)
    while (count is None or i < count) and perf() < stop_at:
        if interval:
            ahead = start + i * interval - perf()
            if ahead > 0.0005:
                await asyncio.sleep(ahead)
        elif i % 256 == 0:
            await asyncio.sleep(0)  # let the sender task run when emitting flat out
        op = next(source, None)
        if op is None:
            break
        t0 = perf()
        try:
            fut = _emit(producer, op)
        except ProducerBackpressureError:
            report.rejected += 1
        else:
            report.latencies_s.append(perf() - t0)
            fut.add_done_callback(functools.partial(acknowledged, t0))
            outstanding += 1
            report.emitted += 1
            report.by_kind[op.kind] = report.by_kind.get(op.kind, 0) + 1
        i += 1
        if progress is not None and i % 500 == 0:
            progress(i, perf() - start)
    report.elapsed_s = perf() - start
    while outstanding:
        all_known.clear()
        await all_known.wait()
    with contextlib.suppress(ProducerDeliveryError):
        await producer.flush()  # counted above, per future; flush only resets its own tally
    if progress is not None:
        progress(i, report.elapsed_s)
    return report


__all__ = ["EventGenerator", "LoadMix", "LoadReport", "Op", "percentile", "run_load"]
