"""Benchmark workload: the demo event plan, the documents it turns into, and topic setup.

Every measurement in one run reads the same plan (same seed), so ceilings, baselines and
the indexer see the same events in the same order. Documents are built exactly as the
partition worker builds them (the model's `to_document()` plus the service metadata, or a
versioned tombstone for a delete), so the bulk ceiling sends what the indexer sends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.demo import DemoPlan, plan_events, produce_records
from stream_indexer.errors import PoisonRecordError
from stream_indexer.models import ListingEvent
from stream_indexer.opensearch.bulk import PendingWrite, build_body
from stream_indexer.opensearch.mapping import tombstone_document
from stream_indexer.pipeline.decode import decode_event

Record = tuple[bytes | None, bytes | None]
MAX_VALUE_BYTES = 1024 * 1024


@dataclass
class ProducedTopic:
    """A topic filled with a backlog before anything consumes it."""

    name: str
    records: int
    ends: dict[int, int]
    produce_s: float

    @property
    def produce_rate(self) -> float:
        return self.records / self.produce_s if self.produce_s else 0.0


def make_plan(events: int, *, listings: int, seed: int, poison_every: int) -> DemoPlan:
    """The demo plan: creates, updates, out-of-order versions, duplicates, deletes, poison."""
    return plan_events(events, listings=listings, seed=seed, poison_every=poison_every)


def run_id() -> str:
    return uuid.uuid4().hex[:8]


async def produce_backlog(
    bootstrap: str, name: str, records: Sequence[Record], *, partitions: int
) -> ProducedTopic:
    """Create `name` with `partitions` and produce `records` into it, in order."""
    await ensure_topic(bootstrap, name, partitions=partitions)
    started = time.perf_counter()
    ends = await produce_records(bootstrap, name, records)
    return ProducedTopic(name, len(records), ends, time.perf_counter() - started)


def event_document(event: ListingEvent, indexed_at: str) -> dict[str, Any]:
    """The `_source` the indexer writes for `event` (same code path as the worker)."""
    if event.action == "delete" or event.data is None:
        return tombstone_document(event.listing_id, event.version, str(event.event_id), indexed_at)
    document = event.data.to_document()
    document["version"] = event.version
    document["indexed_at"] = indexed_at
    document["event_id"] = str(event.event_id)
    return document


def decode_or_none(key: bytes | None, value: bytes | None) -> ListingEvent | None:
    """The event, or None for a poison record (ceilings and baselines skip those)."""
    try:
        return decode_event(key, value, max_bytes=MAX_VALUE_BYTES)
    except PoisonRecordError:
        return None


def writes_for(records: Sequence[Record]) -> list[PendingWrite]:
    """One write per valid record, in record order, no coalescing (the ceiling's input)."""
    indexed_at = datetime.now(UTC).isoformat()
    writes: list[PendingWrite] = []
    for key, value in records:
        event = decode_or_none(key, value)
        if event is not None:
            document = event_document(event, indexed_at)
            writes.append(PendingWrite(event.listing_id, event.version, document))
    return writes


def bulk_bodies(writes: Sequence[PendingWrite], batch_size: int) -> list[tuple[bytes, int]]:
    """Pre-serialized `_bulk` bodies of `batch_size` writes each, with their item counts."""
    return [
        (build_body(writes[i : i + batch_size]), len(writes[i : i + batch_size]))
        for i in range(0, len(writes), batch_size)
    ]
