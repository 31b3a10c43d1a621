"""Producer side for non-async callers: a blocking facade over `ListingEventProducer`.

The async producer runs on its own event loop in a daemon thread. `emit*` blocks only until
the event is buffered (bounded by `producer.emit_timeout_ms`, plus an outbox insert when Kafka
cannot take it) and returns a `concurrent.futures.Future` for the delivery result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Coroutine, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

from stream_indexer.errors import ProducerClosedError
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.producer.client import DeliveryResult, ListingEventProducer
from stream_indexer.producer.outbox import PoolOutbox
from stream_indexer.settings import Settings

T = TypeVar("T")
Delivery = concurrent.futures.Future[DeliveryResult]


class SyncListingEventProducer:
    """`with SyncListingEventProducer(settings) as producer: producer.emit_index(...)`."""

    def __init__(
        self, settings: Settings, *, topic: str | None = None, outbox_dsn: str | None = None
    ) -> None:
        self.settings = settings
        self._topic = topic
        self._outbox_dsn = outbox_dsn
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="listing-event-producer", daemon=True
        )
        self._producer: ListingEventProducer | None = None
        self._pool: asyncpg.Pool | None = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> None:
        """Start the background loop and connect (raises what the async `start()` raises)."""
        if self._producer is not None:
            return
        self._thread.start()
        self._producer = self._call(self._start())

    async def _start(self) -> ListingEventProducer:
        outbox = None
        if self._outbox_dsn is not None:
            self._pool = await asyncpg.create_pool(self._outbox_dsn, min_size=1, max_size=2)
            outbox = PoolOutbox(self._pool, table=self.settings.outbox.table)
        producer = ListingEventProducer(self.settings, topic=self._topic, outbox=outbox)
        await producer.start()
        return producer

    def close(self, timeout: float | None = None) -> None:
        """Flush (bounded), disconnect and end the background thread. Idempotent."""
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        try:
            self._call(self._close(producer, timeout))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _close(self, producer: ListingEventProducer, timeout_s: float | None) -> None:
        await producer.stop(timeout_s)
        if self._pool is not None:
            await self._pool.close()

    def __enter__(self) -> SyncListingEventProducer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _running(self) -> ListingEventProducer:
        if self._producer is None:
            raise ProducerClosedError("the producer is not running (call start() first)")
        return self._producer

    def emit(self, event: ListingEvent | Mapping[str, Any]) -> Delivery:
        """Validate and enqueue `event`; `.result()` on the return value waits for delivery."""
        return self._call(self._bridge(self._running().emit(event)))

    def emit_index(
        self,
        listing: Listing | Mapping[str, Any],
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
        thin: bool = False,
    ) -> Delivery:
        """Blocking `ListingEventProducer.emit_index`."""
        coro = self._running().emit_index(
            listing, version, occurred_at=occurred_at, event_id=event_id, thin=thin
        )
        return self._call(self._bridge(coro))

    def emit_delete(
        self,
        listing_id: int,
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
    ) -> Delivery:
        """Blocking `ListingEventProducer.emit_delete`."""
        coro = self._running().emit_delete(
            listing_id, version, occurred_at=occurred_at, event_id=event_id
        )
        return self._call(self._bridge(coro))

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every delivery result; raises `ProducerDeliveryError` if any failed."""
        self._call(self._running().flush(timeout))

    @staticmethod
    async def _bridge(
        emitting: Coroutine[Any, Any, asyncio.Future[DeliveryResult]],
    ) -> Delivery:
        result = await emitting
        delivery: Delivery = concurrent.futures.Future()

        def copy(done: asyncio.Future[DeliveryResult]) -> None:
            if done.cancelled():
                delivery.cancel()
            elif done.exception() is not None:
                delivery.set_exception(done.exception())
            else:
                delivery.set_result(done.result())

        result.add_done_callback(copy)
        return delivery


__all__ = ["SyncListingEventProducer"]
