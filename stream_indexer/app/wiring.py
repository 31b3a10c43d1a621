"""Service, construction: the object graph below the consumer loop, built from `Settings`.

Everything a partition worker uses (the OpenSearch sink with its request slots and circuit
breaker, both dead-letter stores, the source loader for thin events, the retry policy) is
made and started here (with the resolver that closes DLQ rows the workers make moot), in
dependency order, each start waited for like an outage
(`until_ready`) and named for the start-up error message (`startup_step`); `stop()` releases
them in reverse. The consumer loop (`service.py`) only sees the finished `WorkerContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_indexer.app.startup import create_pool, until_ready
from stream_indexer.app.startup_errors import Step, permanent_kafka_error, startup_step
from stream_indexer.app.topics import ensure_topic
from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.dlq.held import HeldLetters
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.redaction import Redactor
from stream_indexer.dlq.resolver import DeadLetterResolver
from stream_indexer.dlq.table import PostgresDeadLetterTable
from stream_indexer.dlq.topic import KafkaDeadLetterTopic
from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import DeadLetterStoreError
from stream_indexer.kafka_clients import connection_kwargs, create_producer, producer_kwargs
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.circuit import CircuitBreaker
from stream_indexer.opensearch.concurrency import ConcurrencyController
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.hydrate import SourceLoader
from stream_indexer.pipeline.worker import WorkerContext
from stream_indexer.settings import Settings

POOL_CLOSE_TIMEOUT_S = 5.0


class Wiring(Lifecycle):
    """The sink, the dead-letter stores and the loader; `context` once started."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        stopping: asyncio.Event,
        *,
        bulk_index: str | None = None,
        keep_letter: Callable[[DeadLetter], bool] | None = None,
        bulk_gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`bulk_index`, `keep_letter` and `bulk_gate` (awaited before each bulk request:
        live traffic first) serve a reindex's catch-up group: it writes the
        index being built and stores only the dead letters the live group cannot have."""
        self.settings = settings
        self.metrics = metrics
        self._stopping = stopping
        self._keep_letter = keep_letter
        self.sink = OpenSearchSink(settings, bulk_index=bulk_index)
        opensearch = settings.opensearch
        self.assembler = BulkAssembler(
            self.sink,
            metrics,
            max_in_flight=opensearch.max_in_flight_bulks,
            max_docs=opensearch.bulk_max_docs,
            max_bytes=opensearch.bulk_max_bytes,
            controller=(
                ConcurrencyController(min_limit=1, max_limit=opensearch.max_in_flight_bulks)
                if opensearch.adaptive_concurrency
                else None
            ),
            gate=bulk_gate,
        )
        retry = settings.retry
        self.circuit = CircuitBreaker(
            failure_threshold=retry.circuit_failure_threshold,
            probe=lambda: self.sink.ping(retry.circuit_probe_timeout_s),
            probe_backoff=Backoff(0.5, 2.0, retry.circuit_probe_max_s),
            probe_timeout_s=retry.circuit_probe_timeout_s,
            on_recovered=self.assembler.abandon_stuck,
            gauge=metrics.circuit_state,
        )
        #: partitions holding dead letters a DLQ store has not taken (readiness reports it)
        self.held = HeldLetters(metrics.dlq_held_letters)
        #: a worker has nothing left buffered: the commit loop commits without waiting
        self.drained = asyncio.Event()
        self.pool: Any = None
        self._producer: AIOKafkaProducer | None = None
        self._loader: SourceLoader | None = None
        self.resolver: DeadLetterResolver | None = None
        self._context: WorkerContext | None = None

    @property
    def context(self) -> WorkerContext:
        """What every partition worker of the process shares (after `start()`)."""
        if self._context is None:
            raise RuntimeError("Wiring.context before start()")
        return self._context

    async def _start(self) -> None:
        s = self.settings
        stopping = self._stopping
        with startup_step(Step.OPENSEARCH):
            await until_ready("opensearch", self.sink.start, stopping)
        await self.assembler.start()
        with startup_step(Step.POSTGRES):
            self.pool = await until_ready("postgres", lambda: create_pool(s), stopping)
        with startup_step(Step.DLQ_TOPIC):
            await until_ready("kafka (dead-letter topic)", self._ensure_dlq_topic, stopping)
        with startup_step(Step.DLQ_PRODUCER):
            self._producer = await until_ready(
                "kafka (dead-letter producer)", self._start_producer, stopping
            )
        degraded = self.metrics.dlq_degraded
        dead_letters = DeadLetterWriter(
            PostgresDeadLetterTable(
                self.pool,
                s.dlq.table,
                max_value_bytes=s.dlq.table_max_value_bytes,
                on_degraded=degraded.labels("postgres").inc,
            ),
            KafkaDeadLetterTopic(
                self._producer,
                s.dlq_topic,
                max_message_bytes=producer_kwargs(s, purpose="dlq")["max_request_size"],
                on_degraded=degraded.labels("kafka").inc,
            ),
            optional={"postgres", "kafka"} - set(s.dlq.required_stores),
            keep=self._keep_letter,
        )
        self._loader = SourceLoader(s.source_dsn, s.source, pool_max_size=s.postgres.pool_max_size)
        await self._loader.start()
        backoff = Backoff.from_settings(s.retry)
        if s.dlq.resolve_max_pending:
            metrics = self.metrics
            self.resolver = DeadLetterResolver(
                self.pool,
                s.dlq.table,
                backoff=backoff,
                max_pending=s.dlq.resolve_max_pending,
                stop_timeout_s=min(5.0, s.shutdown_timeout_s),
                on_resolved=lambda resolution, n: metrics.dlq_resolved_rows.labels(resolution).inc(
                    n
                ),
                on_dropped=metrics.dlq_resolutions_dropped.inc,
                on_pending=metrics.dlq_resolutions_pending.set,
            )
            await self.resolver.start()
        self._context = WorkerContext(
            settings=s,
            dead_letters=dead_letters,
            metrics=self.metrics,
            loader=self._loader,
            bulk_writer=BulkWriter(
                assembler=self.assembler,
                circuit=self.circuit,
                policy=RetryPolicy.forever(backoff),
                metrics=self.metrics,
                retry=s.retry,
            ),
            group_id=s.kafka.group_id,
            backoff=backoff,
            redactor=Redactor(s.dlq.redact_drop_fields, s.dlq.redact_hash_fields),
            held=self.held,
            resolver=self.resolver,
            drained=self.drained,
        )

    async def _stop(self) -> None:
        """Release in reverse order of start; each client closes even if another fails."""
        if self.resolver is not None:
            await self.resolver.stop()  # workers are stopped: write what they noted
        await self.circuit.stop()
        await self.assembler.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        if self._loader is not None:
            await self._loader.stop()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), POOL_CLOSE_TIMEOUT_S)
        await self.sink.stop()

    async def _ensure_dlq_topic(self) -> None:
        settings = self.settings
        dlq = settings.dlq
        try:
            await ensure_topic(
                settings.kafka.bootstrap_servers,
                settings.dlq_topic,
                partitions=dlq.topic_partitions,
                replication_factor=dlq.topic_replication_factor,
                config={"retention.ms": str(dlq.topic_retention_ms)},
                client_kwargs={
                    k: v
                    for k, v in connection_kwargs(settings.kafka).items()
                    if k != "bootstrap_servers"
                },
            )
        except KafkaError as exc:
            if permanent_kafka_error(exc):
                raise  # refused credentials or ACL: a start-up failure, not an outage
            raise DeadLetterStoreError(f"cannot create dead-letter topic: {exc}") from exc

    async def _start_producer(self) -> AIOKafkaProducer:
        """The DLQ producer, started; a failed attempt is closed before it is retried."""
        producer = create_producer(self.settings, "dlq")
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer


__all__ = ["Wiring"]
