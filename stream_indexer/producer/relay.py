"""Producer side, the durable path: the outbox relay publishes outbox rows to Kafka.

Each round, in one transaction: lock a batch of pending rows with `FOR UPDATE SKIP LOCKED`
(so several relays share the table), send them, wait for the broker's acknowledgements, and
only then set `sent_at`. A crash before the commit re-publishes the batch (the consumer's
external versioning makes that harmless); nothing is marked that Kafka did not acknowledge.

Order per listing: a row is only taken while no earlier pending row of the same listing
exists outside this batch ("heads" of each listing's queue, plus their followers). Rows are
published through `ListingEventProducer.send_raw_nowait`, the same queue and sender as every
other emit: records of one listing go to one partition in queue order, and aiokafka writes a
partition one batch at a time, so Kafka receives each listing's events in outbox order. If
one of a listing's rows fails, the rows after it are left pending too, so they are published
again after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from stream_indexer.backoff import Backoff, RetryPolicy, retry
from stream_indexer.errors import ProducerDeliveryError, RetryAbortedError
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.producer.client import (
    DeliveryResult,
    ListingEventProducer,
    ProducerBackpressureError,
)
from stream_indexer.producer.outbox import checked_table
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.1
STATS_INTERVAL_S = 1.0
PURGE_INTERVAL_S = 60.0


class OutboxMetrics:
    """The relay's metrics, registered on the registry the caller passes in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending_rows = Gauge(
            "stream_indexer_outbox_pending_rows",
            "Outbox rows not yet acknowledged by Kafka.",
            registry=registry,
        )
        self.oldest_pending_age = Gauge(
            "stream_indexer_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox row not yet acknowledged by Kafka (0 when none).",
            registry=registry,
        )
        self.published = Counter(
            "stream_indexer_outbox_published",
            "Outbox rows acknowledged by Kafka and marked sent.",
            registry=registry,
        )
        self.failures = Counter(
            "stream_indexer_outbox_failures",
            "Relay failures: rows Kafka refused (`publish`) or rounds that failed (`database`).",
            ["stage"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    listing_id: int
    topic: str
    key: bytes
    value: bytes


def rows_to_mark(
    rows: Sequence[OutboxRow], outcomes: Sequence[BaseException | None]
) -> tuple[list[int], list[tuple[int, str]]]:
    """Split a published batch into rows to mark sent and rows that failed.

    `rows` are in id order; `outcomes[i]` is None when row i was acknowledged. After a
    listing's first failure none of its later rows is marked, so they are re-sent after it.
    """
    sent: list[int] = []
    failed: list[tuple[int, str]] = []
    blocked: set[int] = set()
    for row, outcome in zip(rows, outcomes, strict=True):
        if outcome is not None:
            failed.append((row.id, repr(outcome)[:1000]))
            blocked.add(row.listing_id)
        elif row.listing_id not in blocked:
            sent.append(row.id)
    return sent, failed


def _any_error(_exc: BaseException) -> bool:
    """The relay must outlive any single bad round: every failure is retried."""
    return True


class OutboxRelay(Lifecycle):
    """Publishes outbox rows until stopped; `async with OutboxRelay(settings, registry=r):`."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        retain_sent_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.table = checked_table(settings.outbox.table)
        self.batch_size = settings.outbox.batch_size
        self.poll_interval = settings.outbox.poll_interval_ms / 1000
        self.max_backoff = settings.outbox.max_backoff_ms / 1000
        self.retain_sent_s = retain_sent_s
        self.metrics = OutboxMetrics(registry if registry is not None else CollectorRegistry())
        self._pool: asyncpg.Pool | None = None
        self._producer: ListingEventProducer | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_timeout_s: float | None = None
        self._last_stats = 0.0
        self._last_purge = 0.0
        t = self.table
        self._heads_sql = (
            f"SELECT id, listing_id, topic, key, value FROM {t} o "
            "WHERE o.sent_at IS NULL AND NOT EXISTS ("
            f"  SELECT 1 FROM {t} p WHERE p.listing_id = o.listing_id "
            "   AND p.sent_at IS NULL AND p.id < o.id) "
            "ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED"
        )
        self._followers_sql = (
            f"SELECT id, listing_id, topic, key, value FROM {t} "
            "WHERE listing_id = ANY($1::bigint[]) AND sent_at IS NULL "
            "AND NOT (id = ANY($2::bigint[])) ORDER BY id LIMIT $3 FOR UPDATE"
        )
        self._mark_sql = (
            f"UPDATE {t} SET sent_at = now(), attempts = attempts + 1, last_attempt_at = now() "
            "WHERE id = ANY($1::bigint[])"
        )
        self._fail_sql = (
            f"UPDATE {t} SET attempts = attempts + 1, last_attempt_at = now(), "
            "last_error = f.err FROM unnest($1::bigint[], $2::text[]) AS f(id, err) "
            f"WHERE {t}.id = f.id"
        )
        self._stats_sql = (
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 "
            f"FROM {t} WHERE sent_at IS NULL"
        )
        self._purge_sql = (
            f"DELETE FROM {t} WHERE sent_at < now() - make_interval(secs => $1::float8)"
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self) -> None:
        """Connect to Postgres and Kafka and start publishing in a background task."""
        pg = self.settings.postgres
        self._pool = await asyncpg.create_pool(
            pg.dsn.get_secret_value(),
            min_size=1,
            max_size=2,
            command_timeout=pg.command_timeout_s,
        )
        producer = ListingEventProducer(self.settings, client_suffix="outbox-relay")
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # aiokafka leaves a failed start's client open
            pool, self._pool = self._pool, None
            await pool.close()
            raise
        self._producer = producer
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    @property
    def producer(self) -> ListingEventProducer | None:
        """The producer rows are published through (None until started)."""
        return self._producer

    def request_stop(self) -> None:
        """Ask the relay to finish its current batch and stop (safe from a signal handler)."""
        self._stopping.set()

    async def wait(self) -> None:
        """Return when the relay loop has ended (after `request_stop()`)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Finish the batch in flight (bounded), then disconnect. Idempotent."""
        self._stop_timeout_s = timeout_s
        await super().stop()

    async def _stop(self) -> None:
        self.request_stop()
        timeout_s = self._stop_timeout_s
        deadline = timeout_s if timeout_s is not None else self.settings.shutdown_timeout_s
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), deadline)
            except TimeoutError:
                log.error("outbox relay: batch still in flight after %.1fs, abandoning", deadline)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        """Rounds until stopped: a failed round (database error, rows Kafka did not take) is
        retried with backoff by `backoff.retry`; a short round waits the poll interval."""
        policy = RetryPolicy.until_stopped(
            Backoff(INITIAL_BACKOFF_S, 2.0, self.max_backoff), self._stopping
        )
        with contextlib.suppress(RetryAbortedError):
            while not self._stopping.is_set():
                published = await retry(
                    self._round, policy, retriable=_any_error, on_retry=self._round_failed
                )
                if published < self.batch_size:
                    await self._sleep(self.poll_interval)

    async def _round(self) -> int:
        published, failed = await self.run_once()
        await self._housekeeping()
        if failed:
            raise ProducerDeliveryError(f"{failed} outbox rows not published this round")
        return published

    def _round_failed(self, _attempt: int, exc: BaseException, _delay: float) -> None:
        if not isinstance(exc, ProducerDeliveryError):  # rows not taken are counted per row
            self.metrics.failures.labels("database").inc()
            log.warning("outbox relay: round failed: %r", exc)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run_once(self) -> tuple[int, int]:
        """One round: lock, publish, wait for acks, mark. Returns (marked sent, failed)."""
        assert self._pool is not None and self._producer is not None
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await self._lock_batch(conn)
            if not rows:
                return 0, 0
            outcomes = await self._publish(rows)
            sent, failed = rows_to_mark(rows, outcomes)
            if sent:
                await conn.execute(self._mark_sql, sent)
            if failed:
                await conn.execute(self._fail_sql, [i for i, _ in failed], [e for _, e in failed])
        self.metrics.published.inc(len(sent))
        if failed:
            self.metrics.failures.labels("publish").inc(len(failed))
            log.warning("outbox relay: %d row(s) not acknowledged: %s", len(failed), failed[0][1])
        return len(sent), len(failed)

    async def _lock_batch(self, conn: asyncpg.Connection) -> list[OutboxRow]:
        heads = [OutboxRow(*r) for r in await conn.fetch(self._heads_sql, self.batch_size)]
        room = self.batch_size - len(heads)
        if heads and room > 0:
            followers = await conn.fetch(
                self._followers_sql,
                sorted({r.listing_id for r in heads}),
                [r.id for r in heads],
                room,
            )
            heads.extend(OutboxRow(*r) for r in followers)
        heads.sort(key=lambda r: r.id)
        return heads

    async def _publish(self, rows: Sequence[OutboxRow]) -> list[BaseException | None]:
        assert self._producer is not None
        futures: list[asyncio.Future[DeliveryResult] | BaseException] = []
        for row in rows:
            try:
                futures.append(self._producer.send_raw_nowait(row.key, row.value, topic=row.topic))
            except ProducerBackpressureError as exc:
                futures.append(exc)
        outcomes: list[BaseException | None] = []
        for fut in futures:
            if isinstance(fut, BaseException):
                outcomes.append(fut)
                continue
            try:
                await fut
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    async def _housekeeping(self) -> None:
        assert self._pool is not None
        now = time.monotonic()
        if now - self._last_stats >= STATS_INTERVAL_S:
            self._last_stats = now
            count, age = await self._pool.fetchrow(self._stats_sql)
            self.metrics.pending_rows.set(count)
            self.metrics.oldest_pending_age.set(age)
        if self.retain_sent_s is not None and now - self._last_purge >= PURGE_INTERVAL_S:
            self._last_purge = now
            await self._pool.execute(self._purge_sql, self.retain_sent_s)


__all__ = ["OutboxMetrics", "OutboxRelay", "OutboxRow", "rows_to_mark"]
