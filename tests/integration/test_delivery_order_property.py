"""Newest version wins whatever the delivery: permutations, duplicates, batching, partitions.

Property: for any order in which a set of listing events reaches real `PartitionWorker`s
(shuffled, with exact duplicates, cut into arbitrary batches, spread over one or two
partitions), once every offset is committable the index holds, per listing, exactly the
newest version's data, or no searchable document when the newest event is a delete (its
tombstone still carries the newest version). The OpenSearch side is a real osmem-server
clone; only the dead-letter writer is a collecting double, since the property is about
the index and no record here is poison.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.dlq.writer import WriteResult
from stream_indexer.models import Listing
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.circuit import CircuitBreaker
from stream_indexer.opensearch.mapping import METADATA_FIELDS
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.worker import PartitionWorker, WorkerContext
from stream_indexer.settings import Settings, load_settings

pytestmark = pytest.mark.integration

TOPIC = "listings.changes"
BASE_TIME = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
#: bounded wait for a partition's watermark: 0.01 s steps, 30 s in all
WAIT_STEPS = 3_000


@dataclass(frozen=True, slots=True)
class Record:
    """The fields of an aiokafka ConsumerRecord the worker and dead-lettering read."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class CollectingDeadLetters:
    """Dead-letter writer double: keeps what it is given (nothing, for valid events)."""

    stores: tuple[str, ...] = ("postgres", "kafka")
    letters: list[Any] = field(default_factory=list)

    async def write(self, letters: Any) -> WriteResult:
        self.letters.extend(letters)
        return WriteResult(written=self.stores, failed_optional=())


@dataclass(frozen=True)
class Event:
    listing_id: int
    version: int
    action: str
    data: dict[str, Any] | None
    value: bytes


@dataclass(frozen=True)
class Scenario:
    events: list[Event]
    #: (partition, event) in delivery order; duplicates are the same Event again
    delivery: list[tuple[int, Event]]
    partitions: int
    #: per partition: offset gaps before each record (holes in the log)
    holes: list[int]
    chunk_sizes: list[int]
    max_records: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    listing_ids = draw(
        st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=3, unique=True)
    )
    events: list[Event] = []
    for listing_id in listing_ids:
        count = draw(st.integers(min_value=1, max_value=4))
        version = draw(st.integers(min_value=0, max_value=1_000))
        for n in range(count):
            version += draw(st.integers(min_value=1, max_value=1_000))  # strictly increasing
            action = draw(st.sampled_from(["index", "index", "delete"]))
            at = BASE_TIME + timedelta(seconds=n)
            data = listing_data(rng, listing_id, at) if action == "index" else None
            value = event_bytes(listing_id, version, action, data, at, rng)
            events.append(Event(listing_id, version, action, data, value))

    order: list[Event] = list(draw(st.permutations(events)))
    duplicates = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=len(events) - 1),
                st.integers(min_value=0, max_value=len(events)),
            ),
            max_size=len(events),
        )
    )
    for which, where in duplicates:
        order.insert(min(where, len(order)), events[which])

    partitions = draw(st.integers(min_value=1, max_value=2))
    delivery = [
        (draw(st.integers(min_value=0, max_value=partitions - 1)), event) for event in order
    ]
    holes = draw(
        st.lists(
            st.integers(min_value=0, max_value=3), min_size=len(delivery), max_size=len(delivery)
        )
    )
    chunk_sizes = draw(
        st.lists(
            st.integers(min_value=1, max_value=6), min_size=len(delivery), max_size=len(delivery)
        )
    )
    max_records = draw(st.integers(min_value=1, max_value=5))
    return Scenario(events, delivery, partitions, holes, chunk_sizes, max_records)


def records_by_partition(scenario: Scenario) -> dict[int, list[Record]]:
    """Each partition's log: delivery order, increasing offsets with holes."""
    logs: dict[int, list[Record]] = {p: [] for p in range(scenario.partitions)}
    next_offset = dict.fromkeys(logs, 0)
    for (partition, event), hole in zip(scenario.delivery, scenario.holes, strict=True):
        offset = next_offset[partition] + hole
        next_offset[partition] = offset + 1
        logs[partition].append(
            Record(
                topic=TOPIC,
                partition=partition,
                offset=offset,
                timestamp=int(BASE_TIME.timestamp() * 1000),
                key=str(event.listing_id).encode(),
                value=event.value,
            )
        )
    return {p: log for p, log in logs.items() if log}


async def commit_then_abandon(worker: PartitionWorker, end: int) -> None:
    """Wait until the worker's watermark reaches `end` (last offset + 1), then abandon it.

    Abandoning at once (no drain, no deadline) is what a crash right after a commit does:
    whatever is committable must already be in the index, not merely on its way there.
    """
    for _ in range(WAIT_STEPS):
        if worker.tracker.committable == end:
            await worker.stop(0.0, drain=False)
            return
        task = worker._task
        if task is not None and task.done():
            task.result()  # re-raises the worker's crash
            pytest.fail(f"worker of partition {worker.partition} stopped early")
        await asyncio.sleep(0.01)
    pytest.fail(
        f"partition {worker.partition}: committable {worker.tracker.committable}, expected {end}"
    )


def expected_state(events: list[Event]) -> dict[int, Event]:
    newest: dict[int, Event] = {}
    for event in events:
        if event.listing_id not in newest or event.version > newest[event.listing_id].version:
            newest[event.listing_id] = event
    return newest


def listing_source(data: dict[str, Any]) -> dict[str, Any]:
    """What the index must hold for `data`: known fields only, as JSON."""
    parsed: dict[str, Any] = orjson.loads(orjson.dumps(Listing.model_validate(data).to_document()))
    return parsed


async def worker_context(
    app_settings: Settings, sink: OpenSearchSink, dead_letters: CollectingDeadLetters
) -> tuple[WorkerContext, CircuitBreaker, BulkAssembler]:
    """The shared context as the service builds it: real bulk writer and circuit breaker."""
    metrics = Metrics(CollectorRegistry())
    backoff = Backoff(initial_s=0.01, multiplier=2.0, max_s=0.2)
    circuit = CircuitBreaker(probe=sink.ping, probe_backoff=backoff)
    assembler = BulkAssembler(sink, metrics, max_in_flight=2, max_docs=10_000, max_bytes=1 << 24)
    await assembler.start()
    bulk_writer = BulkWriter(
        assembler=assembler,
        circuit=circuit,
        policy=RetryPolicy.forever(backoff),
        metrics=metrics,
        retry=app_settings.retry,
    )
    ctx = WorkerContext(
        settings=app_settings,
        dead_letters=dead_letters,  # type: ignore[arg-type]
        metrics=metrics,
        loader=None,
        bulk_writer=bulk_writer,
        group_id="g",
        backoff=backoff,
    )
    return ctx, circuit, assembler


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_newest_version_wins_for_any_delivery(osmem_url: str, scenario: Scenario) -> None:
    alias = f"prop_{uuid.uuid4().hex[:10]}"  # a fresh index per example on the shared clone
    app_settings = load_settings(
        {
            "opensearch.hosts": osmem_url,
            "opensearch.index": alias,
            "batch.linger_ms": 0,
            "batch.max_records": scenario.max_records,
        }
    )
    sink = OpenSearchSink(app_settings)
    dead_letters = CollectingDeadLetters()
    ctx, circuit, assembler = await worker_context(app_settings, sink, dead_letters)
    logs = records_by_partition(scenario)
    workers = {p: PartitionWorker(TOPIC, p, ctx) for p in logs}
    await sink.start()
    try:
        for worker in workers.values():
            worker.start()

        # hand records over in arbitrary chunks, alternating partitions, yielding in between
        cursors = dict.fromkeys(logs, 0)
        sizes = iter(scenario.chunk_sizes)
        while any(cursors[p] < len(logs[p]) for p in logs):
            for partition, log in logs.items():
                start = cursors[partition]
                if start >= len(log):
                    continue
                stop = start + next(sizes, len(log))
                workers[partition].submit(log[start:stop])
                cursors[partition] = min(stop, len(log))
                await asyncio.sleep(0)

        await asyncio.gather(
            *(commit_then_abandon(workers[p], log[-1].offset + 1) for p, log in logs.items())
        )

        assert dead_letters.letters == []
        newest = expected_state(scenario.events)
        client = sink.client
        found = await client.search(
            index=alias, body={"query": {"match_all": {}}, "size": 100, "version": True}
        )
        hits = {int(hit["_id"]): hit for hit in found["hits"]["hits"]}
        live = {lid for lid, event in newest.items() if event.action == "index"}
        assert set(hits) == live

        for listing_id, event in newest.items():
            if event.action == "index":
                assert event.data is not None
                source = hits[listing_id]["_source"]
                assert source["version"] == event.version
                assert hits[listing_id]["_version"] == event.version
                listing = {k: v for k, v in source.items() if k not in METADATA_FIELDS}
                assert listing == listing_source(event.data)
                assert source["event_id"] == orjson.loads(event.value)["event_id"]
            else:
                # hidden from searches, but its tombstone holds the newest version
                tombstone = await client.get(
                    index=sink.physical_index, id=str(listing_id), ignore=404
                )
                assert tombstone["found"], f"no tombstone for deleted listing {listing_id}"
                assert tombstone["_version"] == event.version
                assert tombstone["_source"]["deleted"] is True
                assert tombstone["_source"]["version"] == event.version
    finally:
        for worker in workers.values():
            if worker._task is not None and not worker._task.done():  # failed before abandon
                await worker.stop(5.0)
        await circuit.stop()
        await assembler.stop()
        await sink.stop()
