"""The shared fake-data generator, and the demo plan built on it: valid listings, real poison,
the promised mix of hard cases, reproducible from a seed."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from stream_indexer.devtools.demo import plan_events
from stream_indexer.devtools.synthetic import (
    POISON_KINDS,
    event_bytes,
    listing_data,
    poison_value,
)
from stream_indexer.models import ListingEvent

AT = datetime(2025, 5, 1, tzinfo=UTC)


def test_listings_validate_and_lose_the_unknown_field() -> None:
    rng = random.Random(1)
    for listing_id in range(1, 200):
        value = event_bytes(listing_id, 5, "index", listing_data(rng, listing_id, AT), AT, rng)
        event = ListingEvent.model_validate_json(value)
        assert event.listing_id == listing_id and event.data is not None
        assert "legacy_score" not in event.data.model_dump()


def test_same_seed_same_listings() -> None:
    a = [listing_data(random.Random(3), n, AT) for n in range(20)]
    b = [listing_data(random.Random(3), n, AT) for n in range(20)]
    assert orjson.dumps(a) == orjson.dumps(b)


@pytest.mark.parametrize("kind", range(POISON_KINDS))
def test_every_poison_kind_breaks_the_contract(kind: int) -> None:
    with pytest.raises(ValidationError):
        ListingEvent.model_validate_json(poison_value(77, kind))


def test_demo_plan_keeps_its_mix_of_hard_cases() -> None:
    plan = plan_events(2_000, listings=300, seed=5, poison_every=100)
    assert plan.poison == 20
    assert plan.duplicates > 0 and plan.out_of_order > 0 and plan.deletes > 0
    assert len(plan.records) == 2_000 + plan.duplicates + plan.poison
    # each poison record sits on its own listing id and kinds take turns
    poison = [(k, v) for k, v in plan.records if k is not None and int(k) >= 9_000_000]
    assert len({k for k, _ in poison}) == plan.poison
    assert {v for _, v in poison} >= {poison_value(9_000_000, 0), poison_value(9_000_001, 1)}
    # the expected state is the newest event per listing
    assert set(plan.expected) == set(plan.expected_versions)
    assert any(data is None for data in plan.expected.values())  # some end deleted


def test_demo_plan_is_reproducible_apart_from_the_clock() -> None:
    a = plan_events(300, seed=9, poison_every=0)
    b = plan_events(300, seed=9, poison_every=0)
    assert a.expected_versions == b.expected_versions
    assert [k for k, _ in a.records] == [k for k, _ in b.records]
