"""The producer library against a real broker: events arrive keyed, valid and in order,
delivery futures say where, bad input sends nothing, and an unreachable broker or a busy event
loop never makes emit block, nor an accepted event vanish."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_indexer.app.migrate import migrate_up
from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.devstack.tansu import TansuBroker
from stream_indexer.models import ListingEvent
from stream_indexer.producer import (
    InvalidEventError,
    ListingEventProducer,
    PoolOutbox,
    ProducerBackpressureError,
    ProducerDeliveryError,
    SyncListingEventProducer,
)
from stream_indexer.settings import Settings, load_settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def settings_for(bootstrap: str, topic: str, **producer: object) -> Settings:
    overrides: dict[str, object] = {
        "kafka.bootstrap_servers": bootstrap,
        "kafka.topic": topic,
        "producer.enable_idempotence": False,  # aiokafka's idempotent producer fails on tansu
    }
    overrides.update({f"producer.{k}": v for k, v in producer.items()})
    return load_settings(overrides)


def listing(listing_id: int, title: str = "Oak desk") -> dict[str, object]:
    return {"id": listing_id, "title": title, "price": 10, "status": "active", "updated_at": NOW}


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of the first `expected` records, in per-partition order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        records: list[tuple[int, bytes, bytes]] = []
        async with asyncio.timeout(60):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    records.extend((tp.partition, m.key, m.value) for m in messages)
        # anything beyond `expected` would show up in one more short fetch
        extra = await consumer.getmany(timeout_ms=300)
        records.extend((tp.partition, m.key, m.value) for tp, ms in extra.items() for m in ms)
        return records
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def test_emitted_events_arrive_keyed_valid_and_in_order(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = await topic_factory(partitions=3)
    async with ListingEventProducer(settings_for(kafka_bootstrap, topic)) as producer:
        deliveries = []
        for version in range(1, 6):
            for listing_id in (1, 2, 3):
                deliveries.append(await producer.emit_index(listing(listing_id), version))
        deliveries.append(await producer.emit_delete(2, 6))
        await producer.flush()
        results = [await d for d in deliveries]
    assert {r.via for r in results} == {"kafka"}
    assert all(r.offset is not None and r.partition is not None for r in results)

    records = await read_topic(kafka_bootstrap, topic, 16)
    assert len(records) == 16
    versions: dict[int, list[int]] = {}
    partition_of: dict[int, int] = {}
    for partition, key, value in records:
        event = ListingEvent.model_validate_json(value)
        assert key == str(event.listing_id).encode()
        assert partition_of.setdefault(event.listing_id, partition) == partition
        versions.setdefault(event.listing_id, []).append(event.version)
    assert versions == {1: [1, 2, 3, 4, 5], 2: [1, 2, 3, 4, 5, 6], 3: [1, 2, 3, 4, 5]}


async def test_invalid_listing_is_rejected_and_nothing_is_sent(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = await topic_factory(partitions=1)
    async with ListingEventProducer(settings_for(kafka_bootstrap, topic)) as producer:
        with pytest.raises(InvalidEventError) as caught:
            await producer.emit_index(listing(7, title=""), 1)
        assert "data.title" in str(caught.value)
        with pytest.raises(InvalidEventError, match="version"):
            await producer.emit_delete(7, -3)
        assert producer.pending == 0
        sentinel = await producer.emit_index(listing(8), 1)
        await producer.flush()
    assert (await sentinel).offset == 0  # the sentinel is the first record on the topic
    records = await read_topic(kafka_bootstrap, topic, 1)
    assert [ListingEvent.model_validate_json(v).listing_id for _, _, v in records] == [8]


async def test_sync_facade_delivers(kafka_bootstrap: str, topic_factory) -> None:
    topic = await topic_factory(partitions=2)
    settings = settings_for(kafka_bootstrap, topic)

    def use_from_a_thread() -> list[int]:
        with SyncListingEventProducer(settings) as producer:
            futures = [producer.emit_index(listing(i), 1) for i in range(1, 4)]
            futures.append(producer.emit_delete(1, 2))
            with pytest.raises(InvalidEventError) as refused:  # the models' words, as async
                producer.emit_index(listing(5, title=""), 1)
            assert refused.value.fields == ["data.title"]
            producer.flush()
            return [f.result(timeout=30).listing_id or 0 for f in futures]

    assert await asyncio.to_thread(use_from_a_thread) == [1, 2, 3, 1]
    assert len(await read_topic(kafka_bootstrap, topic, 4)) == 4


@pytest.fixture
async def private_broker(tmp_path: Path):
    """A broker of our own, so the test can take it away."""
    broker = TansuBroker(tmp_path / "tansu.log")
    bootstrap = await asyncio.to_thread(broker.start)
    await ensure_topic(bootstrap, "events", partitions=2)
    try:
        yield broker, bootstrap
    finally:
        await asyncio.to_thread(broker.stop)


async def test_unreachable_broker_raises_backpressure_instead_of_blocking(private_broker) -> None:
    broker, bootstrap = private_broker
    settings = settings_for(
        bootstrap, "events", max_pending=3, emit_timeout_ms=50, delivery_timeout_ms=500
    )
    producer = ListingEventProducer(settings)
    await producer.start()
    try:
        await (await producer.emit_index(listing(1), 1))  # the broker is up: delivered
        await asyncio.to_thread(broker.stop)
        buffered = [await producer.emit_index(listing(i), 1) for i in (2, 3, 4)]
        with pytest.raises(ProducerBackpressureError, match="no outbox"):
            await producer.emit_index(listing(5), 1)
        for delivery in buffered:  # never silently lost: each one reports its failure
            with pytest.raises(ProducerDeliveryError):
                await delivery
        with pytest.raises(ProducerDeliveryError, match="3 event"):
            await producer.flush()
    finally:
        await producer.stop(timeout_s=5)


async def test_unreachable_broker_moves_events_to_the_outbox(private_broker, pg_dsn: str) -> None:
    broker, bootstrap = private_broker
    await migrate_up(pg_dsn)
    settings = settings_for(
        bootstrap, "events", max_pending=3, emit_timeout_ms=50, delivery_timeout_ms=500
    )
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with ListingEventProducer(settings, outbox=PoolOutbox(pool)) as producer:
            await (await producer.emit_index(listing(1), 1))
            await asyncio.to_thread(broker.stop)
            # 2-4 fill the queue and time out; 5-6 find it full and go to the outbox at once
            deliveries = [await producer.emit_index(listing(i), 1) for i in range(2, 7)]
            await producer.flush()
            results = [await d for d in deliveries]
        assert {r.via for r in results} == {"outbox"}
        rows = await pool.fetch(
            "SELECT listing_id, version, topic, key, value, sent_at "
            "FROM listing_events_outbox ORDER BY listing_id"
        )
    finally:
        await pool.close()
    assert [r["listing_id"] for r in rows] == [2, 3, 4, 5, 6]
    for row in rows:
        event = ListingEvent.model_validate_json(row["value"])
        assert row["key"] == str(event.listing_id).encode()
        assert row["topic"] == "events" and row["sent_at"] is None


async def test_delivery_futures_carry_partition_and_offset_in_emit_order_per_key(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = await topic_factory(partitions=3)
    async with ListingEventProducer(settings_for(kafka_bootstrap, topic)) as producer:
        deliveries = [
            producer.emit_index_nowait(listing(listing_id), version)
            for version in range(1, 21)
            for listing_id in range(1, 6)
        ]
        results = await asyncio.gather(*deliveries)
    placed: dict[int, list[tuple[int | None, int | None]]] = {}
    for result in results:  # in emit order
        assert result.via == "kafka" and result.topic == topic
        placed.setdefault(result.listing_id or 0, []).append((result.partition, result.offset))
    assert sorted(placed) == [1, 2, 3, 4, 5]
    for spots in placed.values():
        assert len({partition for partition, _ in spots}) == 1  # one key, one partition
        offsets = [offset or 0 for _, offset in spots]
        assert offsets == sorted(set(offsets))  # strictly increasing: Kafka kept emit order
    records = await read_topic(kafka_bootstrap, topic, 100)
    assert len(records) == 100


async def test_broker_down_fails_every_accepted_future_and_refuses_the_rest_at_once(
    private_broker,
) -> None:
    broker, bootstrap = private_broker
    settings = settings_for(bootstrap, "events", max_pending=4, delivery_timeout_ms=500)
    producer = ListingEventProducer(settings)
    await producer.start()
    try:
        first = await producer.emit_index_nowait(listing(1), 1)
        assert first.via == "kafka" and first.offset is not None
        await asyncio.to_thread(broker.stop)
        accepted = [producer.emit_index_nowait(listing(i), 1) for i in range(2, 6)]
        with pytest.raises(ProducerBackpressureError, match="queue is full"):
            producer.emit_index_nowait(listing(6), 1)  # synchronous: no loop turn, no wait
        outcomes = await asyncio.gather(*accepted, return_exceptions=True)
        assert all(isinstance(o, ProducerDeliveryError) for o in outcomes), outcomes
        assert producer.pending == 0
        assert producer.stats == {"kafka": 1, "outbox": 0, "failed": 4, "backpressure": 1}
        with pytest.raises(ProducerDeliveryError, match="4 event"):
            await producer.flush()
    finally:
        await producer.stop(timeout_s=5)


async def test_sync_facade_emits_while_its_event_loop_is_busy(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = await topic_factory(partitions=1)
    settings = settings_for(kafka_bootstrap, topic)

    def use_from_a_thread() -> tuple[bool, bool, int | None]:
        with SyncListingEventProducer(settings) as producer:
            hogging, release, hog_over = threading.Event(), threading.Event(), threading.Event()

            def hog() -> None:  # holds the producer's loop until the test lets go
                hogging.set()
                release.wait(30)
                hog_over.set()

            producer._loop.call_soon_threadsafe(hog)
            assert hogging.wait(30)
            delivery = producer.emit_index(listing(1), 1)  # must not need the loop
            returned_while_busy = not hog_over.is_set()
            done_while_busy = delivery.done()
            release.set()
            return returned_while_busy, done_while_busy, delivery.result(timeout=30).offset

    returned_while_busy, done_while_busy, offset = await asyncio.to_thread(use_from_a_thread)
    assert returned_while_busy and not done_while_busy
    assert offset == 0
