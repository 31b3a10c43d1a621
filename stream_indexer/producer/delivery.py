"""Producer side, step 3: settle each accepted event's future exactly once, never silently.

An event ends as a `DeliveryResult` (acknowledged by Kafka, or parked in the outbox) or as a
failure the caller sees through its future and `flush()` re-raises. `Settlement` owns that
book-keeping for `ListingEventProducer`: the aiokafka delivery callbacks, the watchdog that
holds `delivery_timeout_ms` (aiokafka does not when idempotence is on), and the outbox
fallback. Everything here runs on the producer's event loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from stream_indexer.event_dicts import EventDict, encode_event_dict
from stream_indexer.producer.handoff import HandOff

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
#: events named in flush()'s error (the count covers all of them)
MAX_NAMED_FAILURES = 10


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


#: an asyncio future for callers on the loop, a concurrent one for other threads
Waiter = asyncio.Future[DeliveryResult] | concurrent.futures.Future[DeliveryResult]


class Pending:
    """One accepted event, from the queue until its result future is settled.

    An event queued from the loop's own thread is given without its bytes: `value` writes
    them on first use, which is the sender's, so the emit call leaves out the encoding (about
    a third of a cold call). The bytes are the same either way, and writing them cannot
    fail: validation refuses every value JSON could not carry (lone surrogates, non-finite
    floats, integers beyond 64 bits), and nobody else holds the validated dict.
    """

    __slots__ = (
        "_event",
        "_value",
        "deadline",
        "event_id",
        "headers",
        "key",
        "listing_id",
        "result",
        "settled",
        "settling",
        "topic",
        "version",
    )

    def __init__(
        self,
        event: EventDict | None,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        topic: str,
        result: Waiter,
        deadline: float = 0.0,
    ) -> None:
        if event is None:  # raw bytes
            if value is None:
                raise ValueError("a raw record needs its bytes")
            self.event_id = self.listing_id = self.version = None
        else:
            self.event_id = event["event_id"]
            self.listing_id = event["listing_id"]
            self.version = event["version"]
        self._event = event if value is None else None
        self._value = value
        self.key = key
        self.headers = list(headers) if headers else None
        self.topic = topic
        self.result = result
        self.deadline = deadline  # time.monotonic() by which Kafka must have acknowledged it
        self.settled = False  # the outcome is known and counted (whatever the caller did)
        self.settling = False  # a fallback (outbox write) is under way: start no second one

    @property
    def value(self) -> bytes:
        """The record bytes (`encode_event_dict`), written on first use."""
        value = self._value
        if value is None:
            assert self._event is not None
            value = self._value = encode_event_dict(self._event)
            self._event = None  # the bytes are all that is needed from here on
        return value

    @property
    def label(self) -> str:
        if self.event_id is None:
            return "raw record"
        return f"{self.event_id} (listing {self.listing_id})"


class Settlement:
    """Outcomes of accepted events: results, failures (kept for `flush()`) and fallbacks."""

    def __init__(
        self,
        handoff: HandOff[Pending],
        *,
        outbox: OutboxSink | None,
        delivery_error: Callable[[str], Exception],
    ) -> None:
        self.handoff = handoff
        self.outbox = outbox
        self._delivery_error = delivery_error
        self.all_settled = asyncio.Event()
        self.background: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None  # the producer's, set by start()
        self.failures: list[str] = []
        self.failure_count = 0
        self.stats = {"kafka": 0, "outbox": 0, "failed": 0, "backpressure": 0}

    async def wait_settled(self) -> None:
        """Return once no accepted event is waiting for its outcome."""
        while self.handoff.unsettled:
            self.all_settled.clear()
            await self.all_settled.wait()

    def take_failures(self) -> tuple[int, list[str]]:
        """How many events failed since the last call, and the first few labels."""
        count, failures = self.failure_count, self.failures
        self.failure_count, self.failures = 0, []
        return count, failures

    def on_batch(self, members: list[Pending], fut: asyncio.Future[Any]) -> None:
        """aiokafka's callback for one record batch: its events, in the order appended, sit
        at the batch's base offset plus their place in it."""
        error = None if fut.cancelled() else fut.exception()  # retrieve it: we report it
        if fut.cancelled() or error is not None:
            reason = "cancelled" if fut.cancelled() else repr(error)
            for pending in members:
                self.fall_back(pending, reason)  # those settled meanwhile are skipped
            return
        meta = fut.result()  # acks is "all" or 1 (settings), so the broker names the offset
        for place, pending in enumerate(members):
            if pending.settled:
                continue  # already settled after the deadline (outbox or failure)
            result = DeliveryResult(
                pending.event_id,
                pending.listing_id,
                "kafka",
                pending.topic,
                meta.partition,
                meta.offset + place,
            )
            self.settle(pending, result)

    async def expire_overdue(self, default_wait_s: float) -> None:
        """Settle events Kafka has not acknowledged by their deadline (FIFO, one task).

        Every event has the same timeout, so the admission-ordered deque suffices; queued
        events are covered too.
        """
        accepted = self.handoff.accepted
        while True:
            now = time.monotonic()
            while accepted and (accepted[0].settled or accepted[0].deadline <= now):
                pending = accepted.popleft()
                if not pending.settled:
                    self.fall_back(pending, "not acknowledged within delivery_timeout_ms")
            wait = accepted[0].deadline - now if accepted else default_wait_s
            await asyncio.sleep(min(max(wait, 0.01), 1.0))

    def settle(self, pending: Pending, outcome: DeliveryResult | BaseException) -> None:
        """Record the outcome once; pass it on unless the caller gave up on the future."""
        if pending.settled:
            return
        pending.settled = True
        if isinstance(outcome, BaseException):
            self.stats["failed"] += 1
        else:
            self.stats[outcome.via] += 1
        target = pending.result
        if not target.done():
            try:  # (not contextlib.suppress: this runs once per event)
                if isinstance(outcome, BaseException):
                    target.set_exception(outcome)
                    if isinstance(target, asyncio.Future):
                        target.exception()  # logged and kept for flush(): mark as seen
                else:
                    target.set_result(outcome)
            except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
                pass  # the caller cancelled it meanwhile (another thread's future)
        # drop settled events from the head at once rather than at the watchdog's next turn
        # (up to a second): held that long, they outlive the young GC generation, and every
        # event then costs the older generations' collections (run in some caller's emit)
        accepted = self.handoff.accepted
        while accepted and accepted[0].settled:
            accepted.popleft()
        if self.handoff.settle() == 0:
            self.all_settled.set()

    def fail(self, pending: Pending, reason: str) -> None:
        """Settle with the delivery error: logged, counted, and re-raised by `flush()`."""
        if pending.settled:
            return
        self.failure_count += 1
        if len(self.failures) < MAX_NAMED_FAILURES:
            self.failures.append(pending.label)
        log.error("event %s was not delivered: %s", pending.label, reason)
        self.settle(
            pending, self._delivery_error(f"event {pending.label} was not delivered: {reason}")
        )

    def fall_back(self, pending: Pending, reason: str) -> None:
        """Kafka will not take it: park it in the outbox (in a task), or fail it."""
        if pending.settling or pending.settled:
            return
        pending.settling = True
        loop = self.loop or asyncio.get_running_loop()
        task = loop.create_task(self._settle_by_fallback(pending, reason))
        self.background.add(task)
        task.add_done_callback(functools.partial(self._fallback_done, pending))

    def _fallback_done(self, pending: Pending, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not pending.settled:  # cancelled (by stop), perhaps before it even started
            self.fail(pending, "the producer stopped while moving the event to the outbox")

    async def _settle_by_fallback(self, pending: Pending, reason: str) -> None:
        outcome, reason = await self._to_outbox(pending, reason)
        if outcome is not None:
            self.settle(pending, outcome)
        else:
            self.fail(pending, reason)

    async def _to_outbox(self, pending: Pending, reason: str) -> tuple[DeliveryResult | None, str]:
        if self.outbox is None or pending.listing_id is None:
            return None, reason
        assert pending.event_id is not None and pending.version is not None
        try:
            outbox_id = await self.outbox.write(
                topic=pending.topic,
                listing_id=pending.listing_id,
                version=pending.version,
                event_id=pending.event_id,
                key=pending.key or b"",
                value=pending.value,
            )
        except Exception as exc:
            return None, f"{reason}; outbox write failed: {exc!r}"
        log.warning("event %s moved to the outbox: %s", pending.event_id, reason)
        result = DeliveryResult(
            pending.event_id, pending.listing_id, "outbox", pending.topic, outbox_id=outbox_id
        )
        return result, reason


__all__ = ["DeliveryResult", "Headers", "OutboxSink", "Pending", "Settlement", "Waiter"]
