"""Producer side for non-async callers: a blocking facade over `ListingEventProducer`.

The async producer runs on its own event loop in a daemon thread. `emit*` validates and
queues the event on the caller's thread (`ListingEventProducer.emit_threadsafe`) and returns a
`concurrent.futures.Future` for the delivery result: it never waits for the producer's loop,
however busy. Only a full queue makes it wait, at most `producer.emit_timeout_ms` by the
monotonic clock, before the event goes to the outbox or `ProducerBackpressureError` is raised.
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
from stream_indexer.producer.events import delete_event_dict, index_event_dict
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
        """Validate and enqueue `event` on this thread; `.result()` waits for delivery."""
        return self._running().emit_threadsafe(event)

    def emit_index(
        self,
        listing: Listing | Mapping[str, Any],
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
        thin: bool = False,
    ) -> Delivery:
        """`emit` of an `index` event (see `ListingEventProducer.emit_index_nowait`)."""
        producer = self._running()
        ev = index_event_dict(
            listing, version, occurred_at=occurred_at, event_id=event_id, thin=thin
        )
        return producer._submit_threadsafe(ev)

    def emit_delete(
        self,
        listing_id: int,
        version: int,
        *,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
    ) -> Delivery:
        """`emit` of a `delete` event (see `ListingEventProducer.emit_delete_nowait`)."""
        producer = self._running()
        ev = delete_event_dict(listing_id, version, occurred_at=occurred_at, event_id=event_id)
        return producer._submit_threadsafe(ev)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every delivery result; raises `ProducerDeliveryError` if any failed."""
        self._call(self._running().flush(timeout))


__all__ = ["SyncListingEventProducer"]
