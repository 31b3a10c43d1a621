"""Service: the consume loop that fans records out to partition workers and commits.

One aiokafka consumer in the group fetches with `getmany`; each assigned partition's
records go to its `PartitionWorker`. A full worker buffer pauses that partition. A commit
loop sends, per partition, the tracker's watermark (checkpoint order as in Quix Streams:
the sink is flushed and dead letters are written before a batch completes, and only then
can its offsets be committed). On revocation and on stop, workers drain within a deadline,
what is done is committed, and nothing unfinished is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from stream_indexer.backoff import Backoff
from stream_indexer.bulk_assembler import BulkAssembler
from stream_indexer.bulk_writer import BulkWriter
from stream_indexer.circuit import CircuitBreaker, CircuitState
from stream_indexer.dlq.held import HeldLetters
from stream_indexer.dlq.stats import sample_dlq_table
from stream_indexer.dlq.table import PostgresDeadLetterTable
from stream_indexer.dlq.topic import KafkaDeadLetterTopic
from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import DeadLetterStoreError
from stream_indexer.hydrate import SourceLoader
from stream_indexer.kafka_clients import connection_kwargs, consumer_kwargs, producer_kwargs
from stream_indexer.metrics import Metrics
from stream_indexer.redact import Redactor
from stream_indexer.settings import Settings
from stream_indexer.sink import OpenSearchSink
from stream_indexer.startup import create_pool, until_ready
from stream_indexer.topics import ensure_topic
from stream_indexer.worker import PartitionWorker, WorkerContext

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: IndexerService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._service._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._service._on_assigned(set(assigned))


class IndexerService:
    """The indexer: `start()`, `stop()` (idempotent, bounded by the shutdown deadline)."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.sink = OpenSearchSink(settings)
        self.circuit = CircuitBreaker(
            failure_threshold=settings.retry.circuit_failure_threshold,
            probe=self.sink.ping,
            probe_backoff=Backoff(0.5, 2.0, settings.retry.circuit_probe_max_s),
            gauge=self.metrics.circuit_state,
        )
        self._paused_for_circuit = False
        #: partitions holding dead letters a DLQ store has not taken (readiness reports it)
        self.held = HeldLetters(self.metrics.dlq_held_letters)
        opensearch = settings.opensearch
        self.assembler = BulkAssembler(
            self.sink,
            self.metrics,
            max_in_flight=opensearch.max_in_flight_bulks,
            max_docs=opensearch.bulk_max_docs,
            max_bytes=opensearch.bulk_max_bytes,
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._table: PostgresDeadLetterTable | None = None
        self._pool: Any = None
        self._loader: SourceLoader | None = None
        self._ctx: WorkerContext | None = None
        self._workers: dict[TopicPartition, PartitionWorker] = {}
        self._paused: set[TopicPartition] = set()
        self._committed: dict[TopicPartition, int] = {}
        self._fetch_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._dlq_stats_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stopped = False
        self._started = False
        self.last_fetch = time.monotonic()
        self.last_commit = time.monotonic()
        #: last time no assigned partition had lag (the stall detector's other clock)
        self._caught_up_at = time.monotonic()
        #: set once the consumer has joined the group and got its first assignment
        self.assigned = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        s = self.settings
        self.metrics.build_info.info({"version": _version()})
        await until_ready("opensearch", self.sink.start, self._stopping)
        self._pool = await until_ready("postgres", lambda: create_pool(s), self._stopping)
        degraded = self.metrics.dlq_degraded
        self._table = PostgresDeadLetterTable(
            self._pool,
            s.dlq.table,
            max_value_bytes=s.dlq.table_max_value_bytes,
            on_degraded=degraded.labels("postgres").inc,
        )
        await until_ready("kafka (dead-letter topic)", self._ensure_dlq_topic, self._stopping)
        dlq_producer = producer_kwargs(s, purpose="dlq")
        self._producer = AIOKafkaProducer(**dlq_producer)
        await self._producer.start()
        writer = DeadLetterWriter(
            self._table,
            KafkaDeadLetterTopic(
                self._producer,
                s.dlq_topic,
                max_message_bytes=dlq_producer["max_request_size"],
                on_degraded=degraded.labels("kafka").inc,
            ),
            optional={"postgres", "kafka"} - set(s.dlq.required_stores),
        )
        self._loader = SourceLoader(s.source_dsn, s.source, pool_max_size=s.postgres.pool_max_size)
        retry = s.retry
        backoff = Backoff(
            retry.initial_backoff_ms / 1000, retry.multiplier, retry.max_backoff_ms / 1000
        )
        self._ctx = WorkerContext(
            settings=s,
            dead_letters=writer,
            metrics=self.metrics,
            loader=self._loader,
            bulk_writer=BulkWriter(
                sink=self.sink,
                circuit=self.circuit,
                backoff=backoff,
                metrics=self.metrics,
                retry=retry,
                assembler=self.assembler,
            ),
            group_id=s.kafka.group_id,
            backoff=backoff,
            redactor=Redactor(s.dlq.redact_drop_fields, s.dlq.redact_hash_fields),
            held=self.held,
        )
        self._consumer = AIOKafkaConsumer(**consumer_kwargs(s))
        await self._consumer.start()
        self._consumer.subscribe([s.kafka.topic], listener=_Rebalance(self))
        self._fetch_task = asyncio.create_task(self._fetch_loop(), name="fetch-loop")
        self._commit_task = asyncio.create_task(self._commit_loop(), name="commit-loop")
        self._dlq_stats_task = asyncio.create_task(
            sample_dlq_table(self._pool, self.settings.dlq.table, self.metrics, self._stopping),
            name="dlq-stats",
        )
        log.info(
            "indexer started",
            extra={"topic": s.kafka.topic, "group_id": s.kafka.group_id},
        )

    async def _ensure_dlq_topic(self) -> None:
        dlq = self.settings.dlq
        try:
            await ensure_topic(
                self.settings.kafka.bootstrap_servers,
                self.settings.dlq_topic,
                partitions=dlq.topic_partitions,
                replication_factor=dlq.topic_replication_factor,
                config={"retention.ms": str(dlq.topic_retention_ms)},
                client_kwargs={
                    k: v
                    for k, v in connection_kwargs(self.settings.kafka).items()
                    if k != "bootstrap_servers"
                },
            )
        except KafkaError as exc:
            raise DeadLetterStoreError(f"cannot create dead-letter topic: {exc}") from exc

    async def stop(self) -> None:
        """Stop fetching, drain workers within the shutdown deadline, commit, close clients."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        deadline = self.settings.shutdown_timeout_s
        for task in (self._fetch_task, self._commit_task, self._dlq_stats_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._workers:
            await self._stop_workers(list(self._workers), deadline)
        await self._commit(final=True)
        await self.circuit.close()
        await self.assembler.stop()
        await self._close_clients()
        log.info("indexer stopped")

    async def __aenter__(self) -> IndexerService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_until_stopped(self) -> None:
        """Wait until `request_stop()` is called or a background task dies, then stop."""
        assert self._fetch_task is not None and self._commit_task is not None
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {stop_wait, self._fetch_task, self._commit_task},
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stop_wait.cancel()
        failed = [t for t in done if t is not stop_wait and not t.cancelled() and t.exception()]
        await self.stop()
        if failed:
            raise failed[0].exception()  # type: ignore[misc]

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    def committed_offsets(self) -> dict[TopicPartition, int]:
        """What this member last committed, per partition it owns."""
        return dict(self._committed)

    async def _close_clients(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        if self._loader is not None:
            await self._loader.stop()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
        await self.sink.stop()

    # -- fetching ---------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        max_records = self.settings.kafka.fetch_max_records
        metrics = self.metrics
        while not self._stopping.is_set():
            batches = await consumer.getmany(
                timeout_ms=200, max_records=self._fetch_limit(max_records)
            )
            self.last_fetch = time.monotonic()
            for tp, records in batches.items():
                worker = self._workers.get(tp)
                if worker is None or not records:
                    continue
                metrics.records_consumed.inc(len(records))
                worker.submit(records)
                if worker.full and tp not in self._paused:
                    consumer.pause(tp)
                    self._paused.add(tp)
            self._apply_circuit()
            self._resume_drained()
            self._update_lag()

    def _fetch_limit(self, max_records: int) -> int:
        """At most the smallest room among fetching partitions: one `getmany` may return
        all its records for a single partition, and a buffer must never overflow. A
        partition assigned during the call gets a new, empty buffer (room = the bound)."""
        rooms = [w.room for tp, w in self._workers.items() if tp not in self._paused]
        return max(1, min([max_records, self.settings.batch.buffer_max_records, *rooms]))

    def _apply_circuit(self) -> None:
        """Pause every partition while the sink circuit is open; resume when it is not."""
        consumer = self._consumer
        assert consumer is not None
        if self.circuit.is_open:
            consumer.pause(*self._workers)  # idempotent; also covers newly assigned partitions
            self._paused_for_circuit = True
        elif not self.circuit.is_open and self._paused_for_circuit:
            consumer.resume(*(tp for tp in self._workers if tp not in self._paused))
            self._paused_for_circuit = False

    def _resume_drained(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        if not self._paused_for_circuit:
            for tp in list(self._paused):
                worker = self._workers.get(tp)
                if worker is None:
                    self._paused.discard(tp)
                elif worker.drained_enough:
                    consumer.resume(tp)
                    self._paused.discard(tp)
        paused = len(self._workers) if self._paused_for_circuit else len(self._paused)
        self.metrics.paused_partitions.set(paused)

    def _update_lag(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        now = time.monotonic()
        behind = False
        for tp, worker in self._workers.items():
            labels = (tp.topic, str(tp.partition))
            highwater = consumer.highwater(tp)
            committed = self._committed.get(tp)
            if highwater is not None and committed is not None:
                lag = max(0, highwater - committed)
                self.metrics.consumer_lag.labels(*labels).set(lag)
                behind = behind or lag > 0
            since = worker.tracker.oldest_pending_since()
            self.metrics.oldest_uncommitted_age.labels(*labels).set(
                0.0 if since is None else now - since
            )
        if not behind:
            self._caught_up_at = now

    # -- committing -------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        interval = self.settings.kafka.commit_interval_ms / 1000
        while not self._stopping.is_set():
            await asyncio.sleep(interval)
            await self._commit()

    async def _commit(
        self, tps: list[TopicPartition] | None = None, *, final: bool = False
    ) -> None:
        """Commit each partition's watermark if it moved; log and keep going on failure."""
        consumer = self._consumer
        if consumer is None:
            return
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in tps if tps is not None else list(self._workers):
            worker = self._workers.get(tp)
            if worker is None:
                continue
            committable = worker.tracker.committable
            if committable is not None and committable > self._committed.get(tp, -1):
                offsets[tp] = OffsetAndMetadata(committable, "")
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed%s: %s", " (final)" if final else "", exc)
            return
        self.last_commit = time.monotonic()
        self.metrics.commits.inc(len(offsets))
        for tp, meta in offsets.items():
            self._committed[tp] = meta.offset
            self.metrics.committed_offset.labels(tp.topic, str(tp.partition)).set(meta.offset)

    # -- rebalancing ------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoked").inc()
        mine = [tp for tp in revoked if tp in self._workers]
        if mine:
            await self._stop_workers(mine, self.settings.rebalance_timeout_s)
        for tp in mine:
            self._workers.pop(tp, None)
            self._paused.discard(tp)
            self._committed.pop(tp, None)
            self._forget_partition_series(tp)
        self.metrics.assigned_partitions.set(len(self._workers))

    def _forget_partition_series(self, tp: TopicPartition) -> None:
        labels = (tp.topic, str(tp.partition))
        for gauge in (
            self.metrics.consumer_lag,
            self.metrics.oldest_uncommitted_age,
            self.metrics.committed_offset,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    async def _stop_workers(self, tps: list[TopicPartition], deadline_s: float) -> None:
        workers = [self._workers[tp] for tp in tps if tp in self._workers]
        await asyncio.gather(*(w.stop(deadline_s, drain=True) for w in workers))
        await self._commit(tps, final=True)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assigned").inc()
        consumer = self._consumer
        assert consumer is not None and self._ctx is not None
        for tp in assigned:
            if tp in self._workers:
                continue
            worker = PartitionWorker(tp.topic, tp.partition, self._ctx)
            self._workers[tp] = worker
            worker.start()
        for tp in assigned:
            with contextlib.suppress(KafkaError):
                committed = await consumer.committed(tp)
                if committed is not None:
                    self._committed[tp] = committed
        self.metrics.assigned_partitions.set(len(self._workers))
        log.info(
            "partitions assigned",
            extra={
                "topic": self.settings.kafka.topic,
                "partitions": ",".join(str(tp.partition) for tp in sorted(assigned)),
            },
        )
        self.assigned.set()

    # -- health -----------------------------------------------------------------------

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._workers)

    def liveness(self) -> tuple[bool, str]:
        """Alive while the fetch loop turns (it wakes at least every 200 ms)."""
        if self._fetch_task is not None and self._fetch_task.done():
            return False, "fetch loop exited"
        now = time.monotonic()
        idle = now - self.last_fetch
        if idle > max(30.0, self.settings.kafka.max_poll_interval_ms / 1000):
            return False, f"no fetch for {idle:.0f} s"
        stalled = now - max(self.last_commit, self._caught_up_at)
        outage = self.circuit.is_open or self.held.letters > 0
        if stalled > self.settings.metrics.stall_timeout_s and not outage:
            # lag > 0 and nothing committed for that long (an open circuit or a DLQ store
            # holding letters is an outage, reported by /readyz; a restart would not help)
            return False, f"stalled: behind and no commit for {stalled:.0f} s"
        return True, "consuming"

    def readiness(self) -> tuple[bool, str]:
        if self._stopping.is_set():
            return False, "stopping"
        if self.circuit.state is not CircuitState.CLOSED:
            return False, f"sink circuit {self.circuit.state.name.lower()}"
        held = self.held.summary()
        if held is not None:
            return False, held
        if not self._workers:
            return True, "waiting for partition assignment"
        return True, f"{len(self._workers)} partitions assigned"


def _version() -> str:
    from stream_indexer import __version__

    return __version__
