"""Partition worker: turns one partition's records into bulk writes and dead letters.

Each assigned partition gets one worker task. It takes records in offset order from a
bounded buffer, groups them by count, bytes and linger, decodes them, keeps the newest
event per listing, hydrates thin events, writes one `_bulk`, retries only what failed, and
dead-letters poison. Only when every record of a batch is indexed, stale or dead-lettered
does the batch complete in the `OffsetTracker`, which is what makes its offsets committable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from stream_indexer import cycle_collector
from stream_indexer.backoff import Backoff, RetryPolicy, retry
from stream_indexer.dlq.held import HeldLetters
from stream_indexer.dlq.letters import dead_letter_for
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.redaction import Redactor
from stream_indexer.dlq.resolver import DeadLetterResolver, Written
from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import (
    DeadLetterStoreError,
    PoisonRecordError,
    SourceRowRejectedError,
    SourceUnavailableError,
)
from stream_indexer.observability.metrics import Metrics, observe_each, observe_many
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.buffer import Buffered, PartitionBuffer
from stream_indexer.pipeline.coalesce import coalesce
from stream_indexer.pipeline.documents import is_thin, is_tombstone, pending_writes_of_dicts
from stream_indexer.pipeline.event_dict import EventDict, decode_event_dict, epoch_seconds
from stream_indexer.pipeline.hydrate import Hydrated, SourceLoader
from stream_indexer.pipeline.offsets import OffsetTracker
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkerContext:
    """What all partition workers of one process share."""

    settings: Settings
    dead_letters: DeadLetterWriter
    metrics: Metrics
    loader: SourceLoader | None
    bulk_writer: BulkWriter
    group_id: str
    backoff: Backoff = field(default_factory=Backoff)
    redactor: Redactor | None = None
    #: partitions holding letters a DLQ store has not taken (readiness, held-letters gauge)
    held: HeldLetters = field(default_factory=HeldLetters)
    #: closes DLQ rows of listings written at or past their version (best effort, buffered)
    resolver: DeadLetterResolver | None = None
    #: set when a worker finished a batch with nothing left buffered: the commit loop
    #: commits then instead of at its next interval (a drained backlog shows lag 0 at once)
    drained: asyncio.Event | None = None


@dataclass(slots=True, eq=False)
class _Decoded:
    record: Any
    event: EventDict
    fetched_at: float
    # copied from the event: coalescing reads them for every record
    listing_id: int
    version: int


@dataclass(slots=True)
class _BatchOutcome:
    written: int = 0
    deleted: int = 0
    stale: int = 0
    letters: list[DeadLetter] = field(default_factory=list)
    #: what was written (or found stale) at which version, for the resolver
    resolves: list[Written] = field(default_factory=list)


class PartitionWorker:
    """Owns one partition's buffer, tracker and processing task."""

    def __init__(self, topic: str, partition: int, ctx: WorkerContext) -> None:
        self.topic = topic
        self.partition = partition
        self.tracker = OffsetTracker()
        self._ctx = ctx
        self.buffer = PartitionBuffer(ctx.settings.batch, ctx.metrics.queue_size)
        self._max_value_bytes = ctx.settings.dlq.max_value_bytes
        #: a store or source that is down is waited for: the partition holds, never skips
        self._forever = RetryPolicy.forever(ctx.backoff)
        self._task: asyncio.Task[None] | None = None
        #: this worker's batch announcement to the bulk assembler, 0 if none (see `_run`)
        self._announcement = 0
        #: called once a batch is taken from the buffer (flow control resumes a partition
        #: that it drained at once, instead of when the fetch loop next looks)
        self.on_batch_taken: Callable[[], None] | None = None

    # -- the fetch loop's side: the buffer --------------------------------------------

    def submit(self, records: Sequence[Any]) -> None:
        """Queue fetched records (offset order); never blocks: the caller pauses on `full`."""
        self.buffer.submit(records)

    @property
    def buffered(self) -> int:
        return len(self.buffer)

    @property
    def room(self) -> int:
        return self.buffer.room

    @property
    def full(self) -> bool:
        return self.buffer.full

    @property
    def drained_enough(self) -> bool:
        return self.buffer.drained_enough

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"worker-{self.topic}-{self.partition}"
            )

    async def stop(self, deadline_s: float, *, drain: bool = True) -> None:
        """Stop taking records; finish the buffer (if `drain`) within the deadline, else abandon.

        Abandoned records are simply not completed, so their offsets are never committed and
        they are re-delivered to whoever owns the partition next.
        """
        self.on_batch_taken = None  # a worker that is stopping asks for no more records
        if not drain:
            self.buffer.drop()
        self.buffer.close()
        task = self._task
        if task is None or task.done():
            self.buffer.drop()
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=deadline_s)
        except TimeoutError:
            log.warning(
                "worker did not finish within %.1f s; abandoning unfinished records",
                deadline_s,
                extra={"topic": self.topic, "partition": self.partition},
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self.buffer.drop()

    async def _run(self) -> None:
        # A batch is announced to the bulk assembler from its first record (from the start,
        # for the first one: a partition just assigned has its backlog on the way) until it
        # is queued; a request about to go out waits for it rather than leaving it for the
        # next one (assembler.py).
        self._announce()
        try:
            while await self.buffer.has_records():
                self._announce()
                batch = await self.buffer.take_batch()
                if batch is None:
                    return
                if self.on_batch_taken is not None:
                    self.on_batch_taken()
                await self._run_batch(batch)
        finally:
            self._withdraw()

    def _announce(self) -> None:
        if not self._announcement:
            self._announcement = self._ctx.bulk_writer.assembler.announce()

    def _withdraw(self) -> None:
        if self._announcement:
            self._ctx.bulk_writer.assembler.withdraw(self._announcement)
            self._announcement = 0

    async def _run_batch(self, batch: list[Buffered]) -> None:
        try:
            await self._process(batch)
        except asyncio.CancelledError:
            self._ctx.metrics.queue_size.dec(len(batch))
            raise
        except Exception:
            # A bug, not a record problem: stop this partition loudly; its batch stays
            # uncommitted and will be re-delivered after a restart or rebalance.
            self._ctx.metrics.queue_size.dec(len(batch))
            log.exception(
                "partition worker crashed",
                extra={"topic": self.topic, "partition": self.partition},
            )
            raise

    # -- one batch --------------------------------------------------------------------

    async def _process(self, batch: list[Buffered]) -> None:
        ctx = self._ctx
        metrics = ctx.metrics
        token = self.tracker.begin(batch[0][0].offset, batch[-1][0].offset, batch[0][2])
        outcome = _BatchOutcome()
        # the batch's objects are made with the cycle collector paused, then frozen out of
        # its walks (cycle_collector.py: they form no cycles, and live for a whole request)
        with cycle_collector.paused():
            winners, superseded = coalesce(self._decode(batch, outcome))
        if superseded:
            outcome.stale += len(superseded)
            metrics.stale_skipped.labels("coalesced").inc(len(superseded))
        writes = await self._prepare_writes(winners, outcome)
        # queued by the write below without a pause in between, or never queued at all
        self._withdraw()
        if writes:
            await self._write(writes, outcome)
        if outcome.letters:
            await self._dead_letter(outcome.letters)
        if outcome.resolves and ctx.resolver is not None:
            # after this batch's own letters are stored, so a row they create can be closed
            ctx.resolver.note(outcome.resolves)

        self.tracker.complete(token)
        if ctx.drained is not None and not self.buffer:
            ctx.drained.set()
        now = time.monotonic()
        metrics.queue_size.dec(len(batch))
        metrics.success.inc(outcome.written + outcome.deleted + outcome.stale)
        items = metrics.items
        if outcome.written:
            items.labels("indexed").inc(outcome.written)
        if outcome.deleted:
            items.labels("deleted").inc(outcome.deleted)
        if outcome.stale:
            items.labels("stale").inc(outcome.stale)
        if outcome.letters:
            items.labels("dead_lettered").inc(len(outcome.letters))
        # records fetched together finish together: one observation per fetch, weighted
        run_start, run_len = batch[0][2], 0
        for _record, _size, fetched_at in batch:
            if fetched_at != run_start:
                observe_many(metrics.latency, now - run_start, run_len)
                run_start, run_len = fetched_at, 0
            run_len += 1
        observe_many(metrics.latency, now - run_start, run_len)

    def _decode(self, batch: list[Buffered], outcome: _BatchOutcome) -> list[_Decoded]:
        """The batch's events in offset order; poison goes to `outcome.letters`."""
        decoded: list[_Decoded] = []
        for record, _size, fetched_at in batch:
            try:
                event = decode_event_dict(record.key, record.value, max_bytes=self._max_value_bytes)
            except PoisonRecordError as exc:
                outcome.letters.append(self._letter(record, exc, attempts=1))
                continue
            decoded.append(
                _Decoded(record, event, fetched_at, event["listing_id"], event["version"])
            )
        return decoded

    async def _prepare_writes(
        self, winners: list[_Decoded], outcome: _BatchOutcome
    ) -> list[PendingWrite]:
        hydrated = await self._hydrate([d for d in winners if is_thin(d.event)])
        with cycle_collector.paused():
            writes, invalid = pending_writes_of_dicts(
                ((item.event, item) for item in winners), hydrated, datetime.now(UTC).isoformat()
            )
        for item, error in invalid:
            outcome.letters.append(self._letter(item.record, error, attempts=1))
        return writes

    async def _hydrate(self, thin: list[_Decoded]) -> dict[int, Hydrated]:
        """Load thin events' listings; retry while the source is down.

        A query the source rejects for its data (not its availability) is split into one
        query per listing, so only the listing whose row makes it fail becomes poison.
        """
        if not thin:
            return {}
        loader = self._ctx.loader
        if loader is None:
            return {}
        found: dict[int, Hydrated] = {}
        groups = [[d.listing_id for d in thin]]
        while groups:
            group = groups.pop()
            try:
                found.update(
                    await retry(
                        partial(loader.load, group),
                        self._forever,
                        on_retry=partial(self._source_down, len(group)),
                    )
                )
            except SourceRowRejectedError as exc:
                if len(group) == 1:
                    found[group[0]] = exc
                else:
                    groups.extend([listing_id] for listing_id in group)
        return found

    def _source_down(self, items: int, _attempt: int, exc: BaseException, _delay: float) -> None:
        self._ctx.metrics.retry.labels(SourceUnavailableError.error_class).inc(items)
        log.warning(
            "source database unavailable, retrying: %s",
            exc,
            extra={"topic": self.topic, "partition": self.partition},
        )

    async def _write(self, writes: list[PendingWrite], outcome: _BatchOutcome) -> None:
        """Send `writes` until every item is written, stale or poison (see BulkWriter)."""
        ctx = self._ctx
        result = await ctx.bulk_writer.write(
            writes, log_extra={"topic": self.topic, "partition": self.partition}
        )
        written = result.written
        items: list[_Decoded] = [write.context for write in written]
        deleted = sum(1 for write in written if is_tombstone(write))
        outcome.deleted += deleted
        outcome.written += len(written) - deleted
        now_wall = time.time()
        observe_each(
            ctx.metrics.freshness,
            [max(0.0, now_wall - epoch_seconds(item.event["occurred_at"])) for item in items],
        )
        resolves = outcome.resolves if ctx.resolver is not None else None
        if resolves is not None:
            resolves.extend([(item.listing_id, item.version, False) for item in items])
        if result.stale:
            if resolves is not None:
                resolves.extend(
                    (w.context.listing_id, w.context.version, True) for w in result.stale
                )
            outcome.stale += len(result.stale)
            ctx.metrics.stale_skipped.labels("version_conflict").inc(len(result.stale))
        for write, error in result.poison:
            self._poison(write, error, outcome)

    def _poison(
        self, write: PendingWrite, error: PoisonRecordError, outcome: _BatchOutcome
    ) -> None:
        item: _Decoded = write.context
        outcome.letters.append(self._letter(item.record, error, attempts=write.attempts))

    def _letter(self, record: Any, error: BaseException, *, attempts: int) -> DeadLetter:
        letter = dead_letter_for(
            record,
            error,
            attempts=attempts,
            consumer_group=self._ctx.group_id,
            redactor=self._ctx.redactor,
        )
        log.warning(
            "dead-lettering record: %s",
            error,
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "listing_id": letter.listing_id,
                "error_class": letter.error_class,
            },
        )
        return letter

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        """Write to both DLQ stores; hold (retry forever) until both have them.

        Only a store being unavailable holds: a letter a store refuses for what it is gets
        degraded by that store (dlq/degrade.py). Each retry sends a store only the letters
        it has not acknowledged, so the DLQ topic gets each letter once.
        """
        ctx = self._ctx
        delivery = ctx.dead_letters.deliver(letters)
        held_key = (self.topic, self.partition)

        def store_down(attempt: int, exc: BaseException, _delay: float) -> None:
            assert isinstance(exc, DeadLetterStoreError)
            for store in exc.stores:
                ctx.metrics.dlq_write_failures.labels(store).inc()
            cause: BaseException = exc
            while cause.__cause__ is not None:
                cause = cause.__cause__
            ctx.held.hold(held_key, delivery.held, exc.stores, type(cause).__name__)
            log.warning(
                "dead-letter write failed (attempt %d), holding the offset: %s",
                attempt,
                exc,
                extra={"topic": self.topic, "partition": self.partition},
            )

        try:
            result = await retry(delivery.attempt, self._forever, on_retry=store_down)
        finally:
            ctx.held.release(held_key)
        for store in result.failed_optional:
            ctx.metrics.dlq_write_failures.labels(store).inc()
        for letter in letters:
            ctx.metrics.failure.labels(letter.error_class).inc()
            for store in result.written:
                ctx.metrics.dlq_writes.labels(store, letter.error_class).inc()
