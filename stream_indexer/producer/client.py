"""Producer side, step 2: `ListingEventProducer` hands validated events to Kafka.

`emit_nowait` (and `emit_threadsafe` from other threads) validates the event, appends it to a
bounded in-memory queue (`handoff.HandOff`) and returns a future for the delivery result,
without awaiting anything: the caller never waits for the event loop or for aiokafka. On the
loop thread the record bytes are left to the sender (`delivery.Pending.value`), which runs on
that thread anyway; other threads write them before queueing, keeping the loop's share small.
One task on the producer's loop drains the queue into aiokafka in order, one record
batch per partition (`batches.PartitionBatcher`), so events of one listing (one key, one
partition) reach Kafka in emit order. The async `emit*` methods are thin wrappers that never
yield to the loop.

No accepted event is dropped silently. A full queue is the caller's answer at once (the event
goes to the outbox if one is configured, else `ProducerBackpressureError`); an event not
acknowledged within `producer.delivery_timeout_ms`, or that Kafka refused, goes to the outbox,
or its future fails with `ProducerDeliveryError` (also logged and re-raised by `flush()`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from stream_indexer.errors import (
    ProducerBackpressureError,
    ProducerClosedError,
    ProducerDeliveryError,
)
from stream_indexer.event_dicts import EventDict, encode_event_dict
from stream_indexer.kafka_clients import (
    ProducerPurpose,
    create_producer,
    library_max_request_size,
)
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.producer.batches import PartitionBatcher
from stream_indexer.producer.delivery import (
    DeliveryResult,
    Headers,
    OutboxSink,
    Pending,
    Settlement,
)
from stream_indexer.producer.events import (
    delete_event_dict,
    encode_key,
    index_event_dict,
    top_up_event_ids,
    validate_event_dict,
)
from stream_indexer.producer.handoff import Admission, HandOff
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)


class ListingEventProducer(Lifecycle):
    """Async producer of listing events; use `async with ListingEventProducer(settings):`."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        outbox: OutboxSink | None = None,
        client_suffix: ProducerPurpose = "producer",
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.kafka.topic
        self.outbox = outbox
        self._client_suffix = client_suffix
        self._emit_timeout = settings.producer.emit_timeout_ms / 1000
        self._delivery_timeout = settings.producer.delivery_timeout_ms / 1000
        self._handoff: HandOff[Pending] = HandOff(settings.producer.max_pending)
        self._producer: AIOKafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wakeup = asyncio.Event()
        self._settlement = Settlement(
            self._handoff, outbox=outbox, delivery_error=ProducerDeliveryError
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_timeout_s: float | None = None
        #: outcome counts: "kafka", "outbox", "failed", "backpressure" (refused at emit)
        self.stats = self._settlement.stats

    def _new_kafka_producer(self) -> AIOKafkaProducer:
        """The one place the aiokafka producer is made (tests substitute a fake here)."""
        return create_producer(self.settings, self._client_suffix)

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self) -> None:
        """Connect to the cluster (raises the aiokafka error if no broker answers)."""
        producer = self._new_kafka_producer()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # aiokafka leaves a failed start's client open
            raise
        self._producer = producer
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._settlement.loop = self._loop
        self._tasks = [
            self._loop.create_task(self._send_queued(), name="listing-event-producer-sender"),
            self._loop.create_task(
                self._settlement.expire_overdue(self._delivery_timeout),
                name="listing-event-producer-watchdog",
            ),
        ]

    async def stop(self, timeout_s: float | None = None) -> None:
        """Deliver what was accepted (bounded by `timeout_s`), then disconnect. Idempotent.

        Events still unsettled after that fail their futures: none is left hanging.
        """
        self._stop_timeout_s = timeout_s
        await super().stop()

    async def _stop(self) -> None:
        if self._producer is None:
            return  # never started
        self._handoff.close()
        timeout_s = self._stop_timeout_s
        deadline = self._delivery_timeout + self._emit_timeout if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._settlement.wait_settled(), deadline)
        except TimeoutError:
            log.error("producer stop: %d events still unacknowledged", self._handoff.unsettled)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._producer.stop(), max(deadline, 1.0))
        except TimeoutError:
            log.error("producer stop: aiokafka producer did not close in time")
        background = list(self._settlement.background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        while self._handoff.accepted:
            pending = self._handoff.accepted.popleft()
            self._settlement.fail(
                pending, "the producer stopped before Kafka acknowledged the event"
            )

    @property
    def pending(self) -> int:
        """Events accepted whose delivery result is not known yet (queued or in flight)."""
        return self._handoff.unsettled

    # -- emitting without waiting ----------------------------------------------------------

    def emit_nowait(
        self, event: ListingEvent | Mapping[str, Any], *, headers: Headers | None = None
    ) -> asyncio.Future[DeliveryResult]:
        """Validate and queue `event`; returns at once with its delivery future.

        Call it on the producer's event loop thread (from other threads: `emit_threadsafe`).
        It never awaits and never waits for room: a full queue sends the event to the outbox,
        or raises `ProducerBackpressureError` immediately.
        """
        ev = validate_event_dict(event)
        return self._submit_local(ev, headers)

    def emit_index_nowait(
        self,
        listing: Listing | Mapping[str, Any],
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
        thin: bool = False,
        headers: Headers | None = None,
    ) -> asyncio.Future[DeliveryResult]:
        """`emit_nowait` of an `index` event for `listing` at `version`."""
        ev = index_event_dict(
            listing, version, occurred_at=occurred_at, event_id=event_id, thin=thin
        )
        return self._submit_local(ev, headers)

    def emit_delete_nowait(
        self,
        listing_id: int,
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[DeliveryResult]:
        """`emit_nowait` of a `delete` event; `version` must be above the last index version."""
        ev = delete_event_dict(listing_id, version, occurred_at=occurred_at, event_id=event_id)
        return self._submit_local(ev, headers)

    def send_raw_nowait(
        self, key: bytes | None, value: bytes, *, topic: str | None = None
    ) -> asyncio.Future[DeliveryResult]:
        """Queue bytes without validation (the outbox relay, load generation, poison tests)."""
        return self._submit_raw(key, value, topic or self.topic)

    def emit_threadsafe(
        self, event: ListingEvent | Mapping[str, Any], *, headers: Headers | None = None
    ) -> concurrent.futures.Future[DeliveryResult]:
        """`emit_nowait` for any thread, with a `concurrent.futures.Future` for the result.

        When the queue is full it waits for room up to `producer.emit_timeout_ms`, read from
        the monotonic clock inside this call (not on the loop thread, where nothing could free
        room), then sends the event to the outbox or raises `ProducerBackpressureError`.
        """
        return self._submit_threadsafe(validate_event_dict(event), headers)

    def _submit_threadsafe(
        self, event: EventDict, headers: Headers | None = None
    ) -> concurrent.futures.Future[DeliveryResult]:
        """`emit_threadsafe` of an event already validated into its dict form (by
        `producer.events.*_event_dict`): the sync facade's path."""
        result: concurrent.futures.Future[DeliveryResult] = concurrent.futures.Future()
        deadline = None if self._on_loop_thread() else time.monotonic() + self._emit_timeout
        key = encode_key(event["listing_id"])
        value = encode_event_dict(event)
        self._submit(Pending(event, key, value, headers, self.topic, result), deadline)
        return result

    # -- async wrappers (they never yield to the loop) -------------------------------------

    async def emit(
        self, event: ListingEvent | Mapping[str, Any], *, headers: Headers | None = None
    ) -> asyncio.Future[DeliveryResult]:
        """`emit_nowait` for code that prefers to await; await the result for delivery."""
        return self.emit_nowait(event, headers=headers)

    async def emit_index(
        self,
        listing: Listing | Mapping[str, Any],
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
        thin: bool = False,
        headers: Headers | None = None,
    ) -> asyncio.Future[DeliveryResult]:
        """Emit an `index` event for `listing` at `version` (see `version_from_datetime`)."""
        return self.emit_index_nowait(
            listing, version, occurred_at=occurred_at, event_id=event_id, thin=thin, headers=headers
        )

    async def emit_delete(
        self,
        listing_id: int,
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[DeliveryResult]:
        """Emit a `delete` event; `version` must be above the listing's last index version."""
        return self.emit_delete_nowait(
            listing_id, version, occurred_at=occurred_at, event_id=event_id, headers=headers
        )

    async def send_raw(self, key: bytes | None, value: bytes) -> asyncio.Future[DeliveryResult]:
        """Send bytes without validation: for load generation and tests of poison records."""
        return self.send_raw_nowait(key, value)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every accepted event's result; raise `ProducerDeliveryError` if any failed."""
        if timeout_s is None:
            await self._settlement.wait_settled()
        else:
            await asyncio.wait_for(self._settlement.wait_settled(), timeout_s)
        count, failures = self._settlement.take_failures()
        if count:
            raise ProducerDeliveryError(
                f"{count} event(s) were not delivered: {', '.join(failures)}"
            )

    # -- the hand-off ----------------------------------------------------------------------

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _submit_local(
        self, event: EventDict, headers: Headers | None
    ) -> asyncio.Future[DeliveryResult]:
        """Queue a validated event from the loop thread; its bytes are written by the sender
        (`Pending.value`), on this same thread, after the call has returned.

        The emit path of an API handler, so it is written flat: one check of the producer's
        state, one future, one queue append, and the sender woken directly when it is idle.
        """
        loop = self._loop
        if loop is None or not self.running or threading.get_ident() != self._loop_thread:
            raise self._not_here()
        result = loop.create_future()
        pending = Pending(
            event,
            encode_key(event["listing_id"]),
            None,
            headers,
            self.topic,
            result,
            time.monotonic() + self._delivery_timeout,
        )
        admission = self._handoff.put(pending)
        if admission is Admission.WAKE:
            self._wakeup.set()
        elif admission is not Admission.QUEUED:
            self._refused(loop, pending, admission)
        return result

    def _submit_raw(
        self, key: bytes | None, value: bytes, topic: str
    ) -> asyncio.Future[DeliveryResult]:
        result = self._local_future()
        self._submit(Pending(None, key, value, None, topic, result), None)
        return result

    def _not_here(self) -> Exception:
        """Why an emit call on the loop thread cannot queue: not running, or not that thread."""
        if self._loop is None or not self.running:
            return ProducerClosedError("the producer is not running (call start() first)")
        return RuntimeError(
            "emit_nowait runs on the producer's event loop thread; use emit_threadsafe"
        )

    def _local_future(self) -> asyncio.Future[DeliveryResult]:
        if self._loop is None or not self.running or not self._on_loop_thread():
            raise self._not_here()
        return self._loop.create_future()

    def _submit(self, pending: Pending, deadline: float | None) -> None:
        """Queue `pending` (waiting for room until `deadline` if given) or fail the call."""
        loop = self._loop
        if loop is None or not self.running:
            raise ProducerClosedError("the producer is not running (call start() first)")
        pending.deadline = time.monotonic() + self._delivery_timeout
        admission = self._handoff.put(pending, deadline=deadline)
        if admission is Admission.WAKE:
            self._call_on_loop(loop, self._wakeup.set)
        elif admission is not Admission.QUEUED:
            self._refused(loop, pending, admission)

    def _refused(
        self, loop: asyncio.AbstractEventLoop, pending: Pending, admission: Admission
    ) -> None:
        """A stopping producer or a full queue: the outbox takes the event, or the call fails."""
        if admission is Admission.CLOSED:
            raise ProducerClosedError("the producer is stopping")
        if (
            self.outbox is not None
            and pending.listing_id is not None
            and self._handoff.admit_overflow()
        ):
            self._call_on_loop(loop, self._settlement.fall_back, pending, "emit queue full")
            return
        self.stats["backpressure"] += 1
        raise ProducerBackpressureError(
            f"the emit queue is full ({self._handoff.capacity} events unacknowledged); "
            f"event {pending.label} was not accepted and no outbox is configured"
        )

    def _call_on_loop(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object
    ) -> None:
        if self._on_loop_thread():
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    async def _send_queued(self) -> None:
        """The one sender: queued events go to aiokafka in queue order (order per key)."""
        assert self._producer is not None
        batcher = PartitionBatcher(
            self._producer, self._settlement, library_max_request_size(self.settings)
        )
        while True:
            self._wakeup.clear()
            queued = self._handoff.take_all()
            if not queued:
                await self._wakeup.wait()
                continue
            await batcher.send(queued)
            top_up_event_ids()  # the next emit calls on this thread find their ids made


__all__ = [
    "DeliveryResult",
    "ListingEventProducer",
    "OutboxSink",
    "ProducerBackpressureError",
    "ProducerClosedError",
    "ProducerDeliveryError",
]
