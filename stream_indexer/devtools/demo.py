"""Demo traffic: realistic listing events with the hard cases, and the index they must give.

Used by `stream-indexer dev --demo N`, the integration tests and the benchmark. The plan
mixes creates, updates, out-of-order versions, exact duplicates, deletes (some followed by
re-creates) and a few poison records, and computes the final state the index must reach:
per listing, the newest version, or nothing when that is a delete.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from stream_indexer.kafka_clients import create_producer

VERSION_BASE = 1_700_000_000_000_000
POISON_ID_BASE = 9_000_000
CITIES = (
    ("Berlin", "DE", 52.52, 13.40),
    ("Paris", "FR", 48.86, 2.35),
    ("Madrid", "ES", 40.42, -3.70),
    ("Warsaw", "PL", 52.23, 21.01),
    ("Lisbon", "PT", 38.72, -9.14),
    ("Vienna", "AT", 48.21, 16.37),
)
ITEMS = ("bike", "sofa", "laptop", "camera", "guitar", "desk", "lamp", "jacket", "phone", "tent")
ADJECTIVES = ("vintage", "barely used", "new", "classic", "compact", "large", "handmade")
CONDITIONS = ("new", "like_new", "good", "fair")
STATUSES = ("active", "active", "active", "reserved", "sold")


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


def listing_data(rng: random.Random, listing_id: int, at: datetime) -> dict[str, Any]:
    """A realistic listing snapshot (plus one unknown field the indexer must drop)."""
    city, country, lat, lon = rng.choice(CITIES)
    item = rng.choice(ITEMS)
    return {
        "id": listing_id,
        "title": f"{rng.choice(ADJECTIVES).capitalize()} {item} #{listing_id}",
        "price": round(rng.uniform(1, 2_000), 2),
        "status": rng.choice(STATUSES),
        "updated_at": at.isoformat(),
        "created_at": (at - timedelta(days=rng.randint(0, 300))).isoformat(),
        "user_id": rng.randint(1, 50_000),
        "category_id": rng.randint(1, 40),
        "description": f"A {item} in {rng.choice(CONDITIONS)} condition, pick-up in {city}.",
        "condition": rng.choice(CONDITIONS),
        "currency": "EUR",
        "location": {"lat": round(lat + rng.uniform(-0.1, 0.1), 5), "lon": round(lon, 5)},
        "city": city,
        "country": country,
        "attributes": {"color": rng.choice(("red", "black", "white")), "size": rng.randint(1, 9)},
        "images": [f"https://img.example.com/{listing_id}/{n}.jpg" for n in range(2)],
        "views_count": rng.randint(0, 10_000),
        "legacy_score": rng.random(),
    }


def event_bytes(
    listing_id: int,
    version: int,
    action: str,
    data: dict[str, Any] | None,
    occurred_at: datetime,
    rng: random.Random,
) -> bytes:
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "action": action,
        "listing_id": listing_id,
        "version": version,
        "occurred_at": occurred_at.isoformat(),
    }
    if data is not None:
        event["data"] = data
    return orjson.dumps(event)


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
    poison_records = poison_samples(rng, max(0, count // poison_every) if poison_every else 0)
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


def poison_samples(rng: random.Random, count: int) -> list[tuple[bytes | None, bytes | None]]:
    """Records every indexer must dead-letter: broken bytes, broken JSON, broken contract."""
    samples: list[tuple[bytes | None, bytes | None]] = []
    for n in range(count):
        listing_id = POISON_ID_BASE + n  # distinct: one DLQ row per poison record
        key = str(listing_id).encode()
        kind = n % 4
        if kind == 0:
            samples.append((key, b'{"event_id": "not closed'))
        elif kind == 1:
            samples.append((key, b"\xff\xfe not utf-8"))
        elif kind == 2:
            bad = {
                "event_id": str(uuid.uuid4()),
                "action": "index",
                "listing_id": listing_id,
                "version": VERSION_BASE,
                "occurred_at": datetime.now(UTC).isoformat(),
                "data": {"id": listing_id, "title": "", "price": -1, "status": "active"},
            }
            samples.append((key, orjson.dumps(bad)))
        else:
            samples.append((key, orjson.dumps({"action": "explode", "listing_id": listing_id})))
    return samples


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
