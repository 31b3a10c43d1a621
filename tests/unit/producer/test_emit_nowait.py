"""`emit_nowait` against a stand-in for aiokafka: it returns without the event loop, a full
queue is an immediate answer, and every accepted event's future settles (ack, outbox, or a
delivery error), also when the producer stops first."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream_indexer.models import Listing, ListingEvent
from stream_indexer.producer import (
    ListingEventProducer,
    ProducerBackpressureError,
    ProducerDeliveryError,
    batches,
    encode_value,
    index_event,
)
from stream_indexer.producer import delivery as delivery_module
from stream_indexer.settings import Settings, load_settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def listing(listing_id: int) -> dict[str, object]:
    return {
        "id": listing_id,
        "title": "Oak desk",
        "price": 10,
        "status": "active",
        "updated_at": NOW,
    }


def producer_event(listing_id: int) -> ListingEvent:
    return index_event(listing(listing_id), 1)


def settings(**producer: object) -> Settings:
    overrides: dict[str, object] = {"producer.enable_idempotence": False}
    overrides.update({f"producer.{k}": v for k, v in producer.items()})
    return load_settings(overrides)


class FakeBatch:
    """aiokafka's `BatchBuilder` surface: takes records until `size` of them."""

    def __init__(self, size: int, kafka: FakeKafka) -> None:
        self.size = size
        self.kafka = kafka
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None, headers: Any) -> Any:
        if len(self.records) >= self.size:
            return None
        self.records.append((key, value))
        self.kafka.appended += 1
        return SimpleNamespace(offset=len(self.records) - 1)


class FakeKafka:
    """aiokafka's producer surface (three partitions, record batches of `batch_size`): acks at
    once (`ack=True`), fails, or holds every batch."""

    def __init__(self, ack: bool | Exception = True, batch_size: int = 1000) -> None:
        self.ack = ack
        self.batch_size = batch_size
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.batches: list[tuple[int, int]] = []  # (partition, records) per batch sent
        self.held: list[asyncio.Future[Any]] = []
        self.appended = 0  # records appended to any batch so far

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_size, self)

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        base = len(self.sent) + 1
        self.sent.extend((topic, key, value) for key, value in batch.records)
        self.batches.append((partition, len(batch.records)))
        if self.ack is True:
            fut.set_result(SimpleNamespace(partition=partition, offset=base))
        elif isinstance(self.ack, Exception):
            fut.set_exception(self.ack)
        else:
            self.held.append(fut)
        return fut


class FakeOutbox:
    def __init__(self) -> None:
        self.rows: list[int] = []

    async def write(
        self,
        *,
        topic: str,
        listing_id: int,
        version: int,
        event_id: uuid.UUID,
        key: bytes,
        value: bytes,
    ) -> int:
        self.rows.append(listing_id)
        return len(self.rows)


class Producer(ListingEventProducer):
    def __init__(self, kafka: FakeKafka, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.kafka = kafka

    def _new_kafka_producer(self) -> Any:
        return self.kafka


def test_emit_nowait_returns_without_the_loop_running() -> None:
    loop = asyncio.new_event_loop()
    try:
        kafka = FakeKafka()
        producer = Producer(kafka, settings())
        loop.run_until_complete(producer.start())
        # the loop is stopped now: the call must not need it to return
        delivery = producer.emit_index_nowait(listing(7), 1)
        assert not delivery.done() and kafka.sent == [] and producer.pending == 1
        result = loop.run_until_complete(delivery)  # the sender runs once the loop does
        # the partition `send()` would pick: murmur2 of the key, as every Kafka client does
        partition = DefaultPartitioner()(b"7", [0, 1, 2], [0, 1, 2])
        assert (result.via, result.listing_id, result.partition, result.offset) == (
            "kafka",
            7,
            partition,
            1,
        )
        assert kafka.sent[0][1] == b"7"
        loop.run_until_complete(producer.stop())
    finally:
        loop.close()


def test_the_call_leaves_the_record_bytes_to_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[object] = []
    real_encode = delivery_module.encode_event_dict

    def counted(event: Any) -> bytes:
        written.append(event)
        return real_encode(event)

    monkeypatch.setattr(delivery_module, "encode_event_dict", counted)
    loop = asyncio.new_event_loop()
    try:
        kafka = FakeKafka()
        producer = Producer(kafka, settings())
        loop.run_until_complete(producer.start())
        event_id = uuid.uuid4()
        result = producer.emit_index_nowait(listing(7), 1, occurred_at=NOW, event_id=event_id)
        assert written == []  # the call validated and queued; no bytes yet
        loop.run_until_complete(result)
        assert len(written) == 1  # the sender wrote them, once
        model = index_event(listing(7), 1, occurred_at=NOW, event_id=event_id)
        assert kafka.sent == [(producer.topic, b"7", encode_value(model))]
        loop.run_until_complete(producer.stop())
    finally:
        loop.close()


def test_a_model_changed_in_place_after_the_call_is_sent_as_it_was() -> None:
    loop = asyncio.new_event_loop()
    try:
        kafka = FakeKafka()
        producer = Producer(kafka, settings())
        loop.run_until_complete(producer.start())
        model = Listing.model_validate(
            {**listing(7), "attributes": {"color": "black"}, "images": ["https://x/1.jpg"]}
        )
        result = producer.emit_index_nowait(model, 1)
        assert model.attributes is not None and model.images is not None
        model.attributes["color"] = "red"  # frozen models still hold mutable containers
        model.images.append("https://x/2.jpg")
        loop.run_until_complete(result)
        sent = orjson.loads(kafka.sent[0][2])["data"]
        assert (sent["attributes"], sent["images"]) == ({"color": "black"}, ["https://x/1.jpg"])
        loop.run_until_complete(producer.stop())
    finally:
        loop.close()


async def test_the_async_emit_never_yields_to_the_loop() -> None:
    async with Producer(FakeKafka(), settings()) as producer:
        step = producer.emit_index(listing(1), 1).__await__()
        with pytest.raises(StopIteration) as finished:
            step.send(None)  # one step, no suspension: the coroutine returned at once
        assert await finished.value.value is not None


async def test_a_full_queue_raises_at_once_and_counts_it() -> None:
    async with Producer(FakeKafka(ack=False), settings(max_pending=2)) as producer:
        accepted = [producer.emit_index_nowait(listing(i), 1) for i in (1, 2)]
        with pytest.raises(ProducerBackpressureError, match="queue is full"):
            producer.emit_index_nowait(listing(3), 1)
        assert producer.stats["backpressure"] == 1 and producer.pending == 2
        await producer.stop(timeout_s=0.01)
    for delivery in accepted:  # stopped before an ack: they fail, they are not forgotten
        assert delivery.done()
        with pytest.raises(ProducerDeliveryError, match="stopped before Kafka acknowledged"):
            await delivery


def test_another_thread_waits_for_room_by_the_monotonic_clock() -> None:
    loop = asyncio.new_event_loop()
    try:
        producer = Producer(FakeKafka(ack=False), settings(max_pending=1, emit_timeout_ms=100))
        loop.run_until_complete(producer.start())
        producer.emit_index_nowait(listing(1), 1)

        def from_a_thread() -> float:
            started = time.monotonic()
            with pytest.raises(ProducerBackpressureError):
                producer.emit_threadsafe(producer_event(2))
            return time.monotonic() - started

        # the loop is not running at all: only a clock read inside the call can end the wait
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waited = pool.submit(from_a_thread).result(timeout=30)
        assert 0.1 <= waited < 5
        loop.run_until_complete(producer.stop(timeout_s=0.01))
    finally:
        loop.close()


async def test_emit_nowait_belongs_to_the_loop_thread() -> None:
    async with Producer(FakeKafka(), settings()) as producer:
        errors: list[BaseException] = []

        def elsewhere() -> None:
            try:
                producer.emit_index_nowait(listing(1), 1)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert len(errors) == 1 and "emit_threadsafe" in str(errors[0])
        delivery = await asyncio.to_thread(producer.emit_threadsafe, producer_event(2))
        assert (await asyncio.wrap_future(delivery)).listing_id == 2


async def test_a_refused_record_fails_its_future_and_flush() -> None:
    async with Producer(FakeKafka(ack=RuntimeError("broker says no")), settings()) as producer:
        delivery = producer.emit_index_nowait(listing(1), 1)
        with pytest.raises(ProducerDeliveryError, match="broker says no"):
            await delivery
        with pytest.raises(ProducerDeliveryError, match="1 event"):
            await producer.flush()
        assert producer.stats["failed"] == 1


async def test_a_full_queue_parks_the_event_in_the_outbox() -> None:
    outbox = FakeOutbox()
    kafka = FakeKafka(ack=False)
    async with Producer(kafka, settings(max_pending=1), outbox=outbox) as producer:
        producer.emit_index_nowait(listing(1), 1)
        parked = await producer.emit_index_nowait(listing(2), 1)
        assert (parked.via, parked.outbox_id) == ("outbox", 1)
        kafka.held[0].set_result(SimpleNamespace(partition=0, offset=0))
        await producer.flush()
    assert outbox.rows == [2]


async def test_keys_are_sent_in_emit_order() -> None:
    kafka = FakeKafka(batch_size=4)  # full batches too: a key's events span several
    async with Producer(kafka, settings()) as producer:
        deliveries = [
            producer.emit_index_nowait(listing(i % 3 + 1), v)
            for v, i in enumerate(range(30), start=1)
        ]
        await producer.flush()
    sent_versions: dict[bytes | None, list[int]] = {}
    for _, key, value in kafka.sent:
        sent_versions.setdefault(key, []).append(orjson.loads(value)["version"])
    for key, versions in sent_versions.items():
        assert versions == sorted(versions), key
    assert sum(len(v) for v in sent_versions.values()) == 30
    # each result names the record's own place: its offset holds its own event
    for delivery in deliveries:
        result = delivery.result()
        _, key, value = kafka.sent[result.offset - 1]
        assert (key, orjson.loads(value)["event_id"]) == (
            b"%d" % result.listing_id,
            str(result.event_id),
        )


async def test_events_are_sent_in_one_batch_per_partition() -> None:
    kafka = FakeKafka()
    async with Producer(kafka, settings()) as producer:
        for i in range(1, 61):
            producer.emit_index_nowait(listing(i), 1)
        await producer.flush()
    partitions = [partition for partition, _ in kafka.batches]
    assert len(partitions) == len(set(partitions)) <= 3  # not one request per record
    assert sum(records for _, records in kafka.batches) == 60


async def test_a_record_too_large_for_a_request_fails_alone() -> None:
    kafka = FakeKafka()
    async with Producer(kafka, settings()) as producer:
        before = producer.emit_index_nowait(listing(1), 1)
        huge = producer.send_raw_nowait(b"2", b"x" * (2 * 1024 * 1024))
        after = producer.emit_index_nowait(listing(3), 1)
        assert (await before).via == (await after).via == "kafka"
        with pytest.raises(ProducerDeliveryError, match="MessageSizeTooLarge"):
            await huge
    assert len(kafka.sent) == 2


async def test_a_long_backlog_does_not_hold_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "SEND_SLICE_S", 0.0)  # every clock check finds the slice used
    kafka = FakeKafka()
    sent_when_others_ran: list[int] = []

    async def neighbour() -> None:
        while True:
            sent_when_others_ran.append(kafka.appended)
            await asyncio.sleep(0)

    async with Producer(kafka, settings()) as producer:
        deliveries = [producer.emit_index_nowait(listing(i), 1) for i in range(1, 257)]
        task = asyncio.create_task(neighbour())
        await asyncio.gather(*deliveries)
        task.cancel()
    # the neighbour ran while the backlog was being sent, not only before or after it
    assert any(0 < n < 256 for n in sent_when_others_ran)


async def test_settled_events_are_released_at_once() -> None:
    async with Producer(FakeKafka(), settings()) as producer:
        await producer.emit_index_nowait(listing(1), 1)
        # not kept until the watchdog's next turn (a second away): no longer referenced
        assert not producer._handoff.accepted


async def test_a_record_no_batch_takes_fails_instead_of_vanishing() -> None:
    async with Producer(FakeKafka(batch_size=0), settings()) as producer:
        with pytest.raises(ProducerDeliveryError, match="refused by an empty record batch"):
            await asyncio.wait_for(producer.emit_index_nowait(listing(1), 1), 5)
