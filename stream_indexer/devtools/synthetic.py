"""Developer tools: the one generator of realistic fake listings, events and poison records.

`demo` (a planned record stream with its expected index) and `loadgen` (an endless operation
stream for the producer library) both draw from here, so the data the demo, the tests and the
benchmarks push through the pipeline looks the same everywhere. Every function takes the
caller's seeded `random.Random`, so a seed reproduces the same listings.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

#: versions start here (a microsecond timestamp, like `updated_at` in µs)
VERSION_BASE = 1_700_000_000_000_000
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
#: how many different kinds of poison record `poison_value` makes
POISON_KINDS = 4


def listing_data(rng: random.Random, listing_id: int, at: datetime) -> dict[str, Any]:
    """A realistic listing snapshot (~0.5 KB of JSON, plus one unknown field to drop)."""
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
    """A record value as a producer writes it (event id drawn from `rng`: reproducible)."""
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


def poison_value(listing_id: int, kind: int) -> bytes:
    """A value every indexer must dead-letter; `kind % POISON_KINDS` picks how it is broken:
    unterminated JSON, not UTF-8, a listing that breaks the contract, an unknown action."""
    kind %= POISON_KINDS
    if kind == 0:
        return b'{"event_id": "not closed'
    if kind == 1:
        return b"\xff\xfe not utf-8"
    if kind == 2:
        bad = {
            "event_id": str(uuid.uuid4()),
            "action": "index",
            "listing_id": listing_id,
            "version": VERSION_BASE,
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"id": listing_id, "title": "", "price": -1, "status": "active"},
        }
        return orjson.dumps(bad)
    return orjson.dumps({"action": "explode", "listing_id": listing_id})


__all__ = [
    "ADJECTIVES",
    "CITIES",
    "CONDITIONS",
    "ITEMS",
    "POISON_KINDS",
    "STATUSES",
    "VERSION_BASE",
    "event_bytes",
    "listing_data",
    "poison_value",
]
