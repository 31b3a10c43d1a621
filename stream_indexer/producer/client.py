"""Producer side, step 2: `ListingEventProducer` hands validated events to Kafka.

`emit*` returns as soon as the record sits in aiokafka's buffer (well under a millisecond),
with a future for the delivery result. It never blocks the caller past
`producer.emit_timeout_ms` and never drops an event silently: when the buffer is full or the
broker cannot take the record, the event goes to the transactional outbox (if one is
configured) or the caller gets `ProducerBackpressureError`. A record that was buffered but not
acknowledged within `producer.delivery_timeout_ms` is likewise moved to the outbox, or its
future fails with `ProducerDeliveryError` (also logged and re-raised by `flush()`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_indexer.errors import (
    ProducerBackpressureError,
    ProducerClosedError,
    ProducerDeliveryError,
)
from stream_indexer.kafka_clients import create_producer
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.producer.events import (
    delete_event,
    encode_key,
    encode_value,
    index_event,
    validate_event,
)
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Where an event ended up: acknowledged by Kafka, or committed to the outbox table."""

    event_id: uuid.UUID | None
    listing_id: int | None
    via: Literal["kafka", "outbox"]
    topic: str
    partition: int | None = None
    offset: int | None = None
    outbox_id: int | None = None


class OutboxSink(Protocol):
    """Somewhere to park an event Kafka could not take (see `producer.outbox.PoolOutbox`)."""

    async def write(
        self,
        *,
        topic: str,
        listing_id: int,
        version: int,
        event_id: uuid.UUID,
        key: bytes,
        value: bytes,
    ) -> int: ...


class _Pending:
    """Book-keeping for one buffered event until its result future is settled."""

    __slots__ = ("event_id", "key", "listing_id", "result", "settling", "value", "version")

    def __init__(
        self,
        event: ListingEvent | None,
        key: bytes,
        value: bytes,
        result: asyncio.Future[DeliveryResult],
    ) -> None:
        self.event_id = event.event_id if event is not None else None
        self.listing_id = event.listing_id if event is not None else None
        self.version = event.version if event is not None else None
        self.key = key
        self.value = value
        self.result = result
        self.settling = False  # a fallback (outbox write) is under way: start no second one


class ListingEventProducer:
    """Async producer of listing events; use `async with ListingEventProducer(settings):`."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        outbox: OutboxSink | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.kafka.topic
        self.outbox = outbox
        self._emit_timeout = settings.producer.emit_timeout_ms / 1000
        self._delivery_timeout = settings.producer.delivery_timeout_ms / 1000
        self._max_pending = settings.producer.max_pending
        self._producer: AIOKafkaProducer | None = None
        self._inflight: set[asyncio.Future[DeliveryResult]] = set()
        self._slot_freed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._deadlines: deque[tuple[float, _Pending]] = deque()
        self._watchdog: asyncio.Task[None] | None = None
        self._failures: list[str] = []
        self._state: Literal["new", "running", "stopped"] = "new"
        self.stats = {"kafka": 0, "outbox": 0, "failed": 0, "backpressure": 0}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the cluster (raises the aiokafka error if no broker answers)."""
        if self._state != "new":
            return
        producer = create_producer(self.settings, "producer")
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # aiokafka leaves a failed start's client open
            raise
        self._producer = producer
        self._state = "running"
        self._watchdog = asyncio.get_running_loop().create_task(
            self._expire_overdue(), name="listing-event-producer-watchdog"
        )

    async def stop(self, timeout_s: float | None = None) -> None:
        """Flush what is buffered (bounded by `timeout_s`), then disconnect. Idempotent."""
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        deadline = self._delivery_timeout + self._emit_timeout if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._drain(), deadline)
        except TimeoutError:
            log.error("producer stop: %d events still unacknowledged", len(self._inflight))
        assert self._producer is not None
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        try:
            await asyncio.wait_for(self._producer.stop(), max(deadline, 1.0))
        except TimeoutError:
            log.error("producer stop: aiokafka producer did not close in time")

    async def __aenter__(self) -> ListingEventProducer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def pending(self) -> int:
        """Events handed to Kafka whose delivery result is not known yet."""
        return len(self._inflight)

    # -- emitting --------------------------------------------------------------------------

    async def emit(
        self, event: ListingEvent | Mapping[str, Any], *, headers: Headers | None = None
    ) -> asyncio.Future[DeliveryResult]:
        """Validate and enqueue `event`; await the returned future for its delivery result."""
        ev = validate_event(event)
        return await self._dispatch(ev, encode_key(ev.listing_id), encode_value(ev), headers)

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
        ev = index_event(listing, version, occurred_at=occurred_at, event_id=event_id, thin=thin)
        return await self._dispatch(ev, encode_key(ev.listing_id), encode_value(ev), headers)

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
        ev = delete_event(listing_id, version, occurred_at=occurred_at, event_id=event_id)
        return await self._dispatch(ev, encode_key(ev.listing_id), encode_value(ev), headers)

    async def send_raw(self, key: bytes | None, value: bytes) -> asyncio.Future[DeliveryResult]:
        """Send bytes without validation: for load generation and tests of poison records."""
        return await self._dispatch(None, key, value, None)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every emitted event's result; raise `ProducerDeliveryError` if any failed."""
        if timeout_s is None:
            await self._drain()
        else:
            await asyncio.wait_for(self._drain(), timeout_s)
        if self._failures:
            failures, self._failures = self._failures, []
            raise ProducerDeliveryError(
                f"{len(failures)} event(s) were not delivered: {', '.join(failures[:10])}"
            )

    async def _drain(self) -> None:
        if self._producer is not None and self._state != "new":
            await self._producer.flush()
        while self._inflight or self._background:
            waiting: list[asyncio.Future[Any]] = [*self._inflight, *self._background]
            await asyncio.wait(waiting)

    # -- internals -------------------------------------------------------------------------

    async def _dispatch(
        self, event: ListingEvent | None, key: bytes | None, value: bytes, headers: Headers | None
    ) -> asyncio.Future[DeliveryResult]:
        if self._state != "running" or self._producer is None:
            raise ProducerClosedError("the producer is not running (call start() first)")
        loop = asyncio.get_running_loop()
        result: asyncio.Future[DeliveryResult] = loop.create_future()
        pending = _Pending(event, key or b"", value, result)
        deadline = loop.time() + self._emit_timeout
        try:
            async with asyncio.timeout_at(deadline):
                while len(self._inflight) >= self._max_pending:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                kafka_future = await self._producer.send(
                    self.topic, value=value, key=key, headers=list(headers) if headers else None
                )
        except (TimeoutError, KafkaError) as exc:
            reason = "buffer full" if isinstance(exc, TimeoutError) else repr(exc)
            return await self._reject(pending, reason)
        self._track(result)
        self._deadlines.append((loop.time() + self._delivery_timeout, pending))
        kafka_future.add_done_callback(lambda fut: self._on_delivery(fut, pending))
        return result

    def _track(self, result: asyncio.Future[DeliveryResult]) -> None:
        self._inflight.add(result)
        result.add_done_callback(self._untrack)

    def _untrack(self, result: asyncio.Future[DeliveryResult]) -> None:
        self._inflight.discard(result)
        if not result.cancelled():
            result.exception()  # failures are logged and kept for flush(): mark as seen
        self._slot_freed.set()

    def _on_delivery(self, fut: asyncio.Future[Any], pending: _Pending) -> None:
        error = None if fut.cancelled() else fut.exception()  # retrieve it: we report it
        if pending.result.done():
            return  # already settled after the deadline (outbox or failure)
        if fut.cancelled() or error is not None:
            reason = "cancelled" if fut.cancelled() else repr(error)
            self._spawn_fallback(pending, reason)
            return
        meta = fut.result()
        self.stats["kafka"] += 1
        pending.result.set_result(
            DeliveryResult(
                pending.event_id,
                pending.listing_id,
                "kafka",
                self.topic,
                meta.partition,
                meta.offset,
            )
        )

    async def _expire_overdue(self) -> None:
        """Settle events Kafka has not acknowledged by their deadline (one task, FIFO order).

        aiokafka expires batches itself when idempotence is off, but never when it is on; this
        makes `delivery_timeout_ms` hold either way. Same timeout for all, so a deque suffices.
        """
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._deadlines and (
                self._deadlines[0][1].result.done() or self._deadlines[0][0] <= now
            ):
                _, pending = self._deadlines.popleft()
                if not pending.result.done():
                    self._spawn_fallback(pending, "not acknowledged within delivery_timeout_ms")
            wait = self._deadlines[0][0] - now if self._deadlines else self._delivery_timeout
            await asyncio.sleep(min(max(wait, 0.01), 1.0))

    def _spawn_fallback(self, pending: _Pending, reason: str) -> None:
        if pending.settling:
            return
        pending.settling = True
        task = asyncio.get_running_loop().create_task(self._settle_by_fallback(pending, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle_by_fallback(self, pending: _Pending, reason: str) -> None:
        if pending.result.done():
            return
        outcome, reason = await self._to_outbox(pending, reason)
        if pending.result.done():
            return
        if outcome is not None:
            pending.result.set_result(outcome)
            return
        label = _label(pending)
        self.stats["failed"] += 1
        self._failures.append(label)
        log.error("event %s was not delivered: %s", label, reason)
        pending.result.set_exception(
            ProducerDeliveryError(f"event {label} was not delivered: {reason}")
        )

    async def _reject(self, pending: _Pending, reason: str) -> asyncio.Future[DeliveryResult]:
        """Emit could not hand the event to Kafka in time: outbox it, or raise. Never drop."""
        outcome, reason = await self._to_outbox(pending, reason)
        if outcome is None:
            self.stats["backpressure"] += 1
            raise ProducerBackpressureError(
                f"Kafka did not take event {_label(pending)} within "
                f"{self._emit_timeout * 1000:.0f} ms ({reason}) and no outbox is configured"
            )
        pending.result.set_result(outcome)
        return pending.result

    async def _to_outbox(self, pending: _Pending, reason: str) -> tuple[DeliveryResult | None, str]:
        if self.outbox is None or pending.listing_id is None:
            return None, reason
        assert pending.event_id is not None and pending.version is not None
        try:
            outbox_id = await self.outbox.write(
                topic=self.topic,
                listing_id=pending.listing_id,
                version=pending.version,
                event_id=pending.event_id,
                key=pending.key,
                value=pending.value,
            )
        except Exception as exc:
            return None, f"{reason}; outbox write failed: {exc!r}"
        self.stats["outbox"] += 1
        log.warning("event %s moved to the outbox: %s", pending.event_id, reason)
        result = DeliveryResult(
            pending.event_id, pending.listing_id, "outbox", self.topic, outbox_id=outbox_id
        )
        return result, reason


def _label(pending: _Pending) -> str:
    if pending.event_id is None:
        return "raw record"
    return f"{pending.event_id} (listing {pending.listing_id})"


__all__ = [
    "DeliveryResult",
    "ListingEventProducer",
    "OutboxSink",
    "ProducerBackpressureError",
    "ProducerClosedError",
    "ProducerDeliveryError",
]
