"""The load generator's event mix: valid events, the promised kinds, versions that make sense."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from stream_indexer.devtools.loadgen import EventGenerator, LoadMix, percentile
from stream_indexer.models import ListingEvent
from stream_indexer.producer.events import InvalidEventError, index_event, validate_json_line


def test_versions_increase_per_listing_except_stale_ones() -> None:
    generator = EventGenerator(LoadMix(stale=0.2), seed=3)
    latest: dict[int, int] = {}
    kinds: Counter[str] = Counter()
    for op in generator.take(3000):
        kinds[op.kind] += 1
        if op.kind == "stale":
            assert op.version < latest[op.listing_id]
        else:
            assert op.version > latest.get(op.listing_id, 0)
            latest[op.listing_id] = op.version
    assert latest == generator.latest_versions
    assert set(kinds) == {"create", "update", "stale", "delete", "thin"}


def test_generated_listings_pass_validation() -> None:
    for op in EventGenerator(seed=1).take(500):
        if op.listing is not None:
            index_event(op.listing, op.version)


def test_poison_records_do_not_validate() -> None:
    ops = EventGenerator(LoadMix.parse("poison=1"), seed=2).take(30)
    assert {op.kind for op in ops} == {"poison"}
    for op in ops:
        with pytest.raises(InvalidEventError):
            validate_json_line(op.raw)


def test_deleted_listings_are_not_updated_until_recreated() -> None:
    generator = EventGenerator(LoadMix(create=0.2, update=0.4, delete=0.4, stale=0, thin=0), seed=5)
    deleted: set[int] = set()
    for op in generator.take(2000):
        if op.kind == "delete":
            deleted.add(op.listing_id)
        elif op.kind == "update":
            assert op.listing_id not in deleted


def test_hot_keys_take_the_configured_share() -> None:
    mix = LoadMix(
        create=0.05, update=0.95, stale=0, delete=0, thin=0, hot_key_ratio=0.8, hot_keys=3
    )
    ops = EventGenerator(mix, seed=7).take(5000)
    updates = [op for op in ops if op.kind == "update"]
    hot = sum(op.listing_id <= 3 for op in updates)
    assert hot / len(updates) > 0.7


def test_mix_parse_and_errors() -> None:
    mix = LoadMix.parse("create=1, update=2, hot_key_ratio=0.5, hot_keys=4")
    assert (mix.create, mix.update, mix.delete, mix.hot_keys) == (1.0, 2.0, 0.0, 4)
    with pytest.raises(ValueError, match="bad mix entry"):
        LoadMix.parse("explode=1")
    with pytest.raises(ValueError):
        LoadMix.parse("create=0")


def test_generator_is_reproducible() -> None:
    a = [op.listing for op in EventGenerator(seed=11).take(50)]
    b = [op.listing for op in EventGenerator(seed=11).take(50)]
    assert orjson.dumps(a) == orjson.dumps(b)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) == 0.0


def test_thin_ops_become_thin_events() -> None:
    ops = EventGenerator(LoadMix(create=0.5, thin=0.5, update=0, stale=0, delete=0), seed=4)
    thin = [op for op in ops.take(200) if op.kind == "thin"]
    assert thin
    event: ListingEvent = index_event({"id": thin[0].listing_id}, thin[0].version, thin=True)
    assert event.is_thin
