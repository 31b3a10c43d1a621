"""Hot-path shortcuts give exactly what the straightforward code gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Histogram

from stream_indexer.devtools.synthetic import listing_data
from stream_indexer.models import Listing
from stream_indexer.observability.metrics import observe_each, observe_many


def test_to_document_equals_model_dump_without_nones() -> None:
    rng = random.Random(3)
    for listing_id in range(1, 50):
        listing = Listing.model_validate(listing_data(rng, listing_id, datetime.now(UTC)))
        assert listing.to_document() == listing.model_dump(exclude_none=True)
    bare = Listing.model_validate(
        {"id": 1, "title": "t", "price": 0, "status": "s", "updated_at": "2026-01-01T00:00:00Z"}
    )
    assert bare.to_document() == bare.model_dump(exclude_none=True)


def _samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    family = next(iter(registry.collect()))
    return [(s.name, s.labels, s.value) for s in family.samples if s.name != "h_created"]


def test_observe_each_equals_observe_per_value() -> None:
    one, each = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h", "h", buckets=(0.1, 1, 10), registry=one)
    b = Histogram("h", "h", buckets=(0.1, 1, 10), registry=each)
    rng = random.Random(5)
    # bucket bounds themselves included: `le` means less than or equal
    values = [0.0, 0.1, 1.0, 10.0, 1e6] + [rng.uniform(0, 20) for _ in range(300)]
    for value in values:
        a.observe(value)
    observe_each(b, values)
    observe_each(b, [])
    assert _samples(one) == _samples(each)


def test_observe_many_equals_repeated_observe() -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h", "h", buckets=(0.1, 1, 10), registry=one)
    b = Histogram("h", "h", buckets=(0.1, 1, 10), registry=many)
    for value, count in ((0.05, 3), (0.5, 7), (5, 1), (50, 2), (1, 0)):
        for _ in range(count):
            a.observe(value)
        observe_many(b, value, count)

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        family = next(iter(registry.collect()))
        return [(s.name, s.labels, s.value) for s in family.samples if s.name != "h_created"]

    assert samples(one) == samples(many)
