"""Developer tools: demo traffic, listing events with the hard cases and the index they give.

Used by `stream-indexer dev --demo N`, the integration tests and the benchmark. The plan
mixes creates, updates, out-of-order versions, exact duplicates, deletes (some followed by
re-creates) and a few poison records, and computes the final state the index must reach:
per listing, the newest version, or nothing when that is a delete. Listings, event values
and poison records come from `synthetic`, the generator `loadgen` uses too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stream_indexer.devtools.synthetic import VERSION_BASE, event_bytes, listing_data, poison_value
from stream_indexer.kafka_clients import create_producer

POISON_ID_BASE = 9_000_000


@dataclass
class DemoPlan:
    """Records to produce, in order, and what the index must hold afterwards."""

    records: list[tuple[bytes | None, bytes | None]]
    #: listing id -> newest listing `data` (None when the newest event is a delete)
    expected: dict[int, dict[str, Any] | None]
    #: listing id -> newest version
    expected_versions: dict[int, int]
    poison: int
    duplicates: int
    out_of_order: int
    deletes: int
    thin: int = 0
    #: listing id -> listing row for the source table (thin events load from there)
    source_rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def live_listings(self) -> dict[int, dict[str, Any]]:
        return {k: v for k, v in self.expected.items() if v is not None}


def plan_events(
    count: int,
    *,
    listings: int | None = None,
    seed: int = 7,
    poison_every: int = 500,
    delete_ratio: float = 0.08,
    out_of_order_ratio: float = 0.05,
    duplicate_ratio: float = 0.02,
    thin_ratio: float = 0.0,
    start_id: int = 1,
) -> DemoPlan:
    """A deterministic plan of about `count` records (poison records included)."""
    rng = random.Random(seed)
    listing_count = listings or max(1, count // 4)
    now = datetime.now(UTC)
    last_version: dict[int, int] = {}
    newest: dict[int, tuple[int, dict[str, Any] | None]] = {}
    source_rows: dict[int, dict[str, Any]] = {}
    events: list[tuple[bytes, bytes]] = []
    deletes = thin = 0
    for n in range(count):
        listing_id = start_id + rng.randrange(listing_count)
        version = last_version.get(listing_id, VERSION_BASE) + rng.randint(1, 1_000_000)
        last_version[listing_id] = version
        at = now - timedelta(seconds=count - n)
        data: dict[str, Any] | None
        if listing_id in newest and rng.random() < delete_ratio:
            action, data, payload = "delete", None, None
            deletes += 1
        else:
            action = "index"
            data = listing_data(rng, listing_id, at)
            payload = data
            if rng.random() < thin_ratio:
                payload = None
                source_rows[listing_id] = data
                thin += 1
        newest[listing_id] = (version, data)
        key = str(listing_id).encode()
        events.append((key, event_bytes(listing_id, version, action, payload, at, rng)))

    positions: dict[int, list[int]] = {}
    for index, (key, _value) in enumerate(events):
        positions.setdefault(int(key), []).append(index)
    repeated = [p for p in positions.values() if len(p) >= 2]
    out_of_order = 0
    for _ in range(int(len(events) * out_of_order_ratio) if repeated else 0):
        spots = rng.choice(repeated)
        k = rng.randrange(len(spots) - 1)
        i, j = spots[k], spots[k + 1]
        events[i], events[j] = events[j], events[i]
        out_of_order += 1
    duplicates = int(len(events) * duplicate_ratio)
    extras: list[tuple[int, tuple[bytes | None, bytes | None]]] = []
    for _ in range(duplicates):
        i = rng.randrange(len(events))
        extras.append((rng.randrange(i, len(events)), events[i]))
    poison_records = poison_samples(max(0, count // poison_every) if poison_every else 0)
    extras.extend((rng.randrange(len(events)), record) for record in poison_records)
    records = _interleave(events, extras)

    # a thin event loads whatever the source row holds now: the newest snapshot
    for listing_id in source_rows:
        version, data = newest[listing_id]
        if data is not None:
            source_rows[listing_id] = data
    return DemoPlan(
        records=records,
        expected={lid: data for lid, (_v, data) in newest.items()},
        expected_versions={lid: v for lid, (v, _d) in newest.items()},
        poison=len(poison_records),
        duplicates=duplicates,
        out_of_order=out_of_order,
        deletes=deletes,
        thin=thin,
        source_rows=source_rows,
    )


def _interleave(
    base: Sequence[tuple[bytes | None, bytes | None]],
    extras: list[tuple[int, tuple[bytes | None, bytes | None]]],
) -> list[tuple[bytes | None, bytes | None]]:
    """`base` with each extra record placed right after base position `at`."""
    extras.sort(key=lambda item: item[0])
    out: list[tuple[bytes | None, bytes | None]] = []
    k = 0
    for index, record in enumerate(base):
        out.append(record)
        while k < len(extras) and extras[k][0] == index:
            out.append(extras[k][1])
            k += 1
    out.extend(record for _at, record in extras[k:])
    return out


def poison_samples(count: int) -> list[tuple[bytes | None, bytes | None]]:
    """Records every indexer must dead-letter, each kind in turn, on distinct listing ids
    (one DLQ row per poison record)."""
    ids = range(POISON_ID_BASE, POISON_ID_BASE + count)
    return [(str(lid).encode(), poison_value(lid, n)) for n, lid in enumerate(ids)]


async def produce_records(
    bootstrap_servers: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None]],
    *,
    compression: str | None = "lz4",
    enable_idempotence: bool = False,
) -> dict[int, int]:
    """Produce `records` in order; return partition -> end offset (last offset + 1)."""
    producer = create_producer(
        None,
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=enable_idempotence,
        compression_type=compression,
        linger_ms=10,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    ends: dict[int, int] = {}
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        for future in futures:
            meta = await future
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ends
