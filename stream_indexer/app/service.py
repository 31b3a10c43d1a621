"""Service: the consume loop that fans records out to partition workers and commits.

One aiokafka consumer in the group fetches with `getmany`; each assigned partition's
records go to its `PartitionWorker`. What the workers share is built by `wiring.py`; which
partitions fetch is decided by `flow.py`; commits (checkpoint order as in Quix Streams: the
sink is flushed and dead letters are written before a batch completes, and only then can
its offsets be committed) by `committer.py`; `/healthz` and `/readyz` by `health.py`. On
revocation and on stop, workers drain within a deadline, what is done is committed, and
nothing unfinished is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from stream_indexer.aiokafka_fixes import keep_paused_fetches
from stream_indexer.app.committer import Committer
from stream_indexer.app.flow import FlowControl
from stream_indexer.app.health import Health, Verdict
from stream_indexer.app.startup import until_ready
from stream_indexer.app.startup_errors import Step, explain, startup_step
from stream_indexer.app.wiring import Wiring
from stream_indexer.cycle_collector import reclaim_periodically
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.stats import sample_dlq_table
from stream_indexer.errors import StreamIndexerError
from stream_indexer.kafka_clients import consumer_kwargs
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.circuit import CircuitBreaker
from stream_indexer.pipeline.worker import PartitionWorker
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)
#: getmany's wait when nothing arrives: also how often flow control and lag are updated
FETCH_TIMEOUT_MS = 200
#: the shortest time between two commits a drained partition asks for
DRAINED_COMMIT_GAP_S = 0.2


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: IndexerService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._service._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._service._on_assigned(set(assigned))


class IndexerService(Lifecycle):
    """The indexer: `start()`, `stop()` (idempotent, bounded by the shutdown deadline)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        bulk_index: str | None = None,
        keep_letter: Callable[[DeadLetter], bool] | None = None,
        bulk_gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`bulk_index` / `keep_letter` / `bulk_gate`: a reindex's catch-up group (see
        `Wiring`)."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._stopping = asyncio.Event()
        self.wiring = Wiring(
            settings,
            self.metrics,
            self._stopping,
            bulk_index=bulk_index,
            keep_letter=keep_letter,
            bulk_gate=bulk_gate,
        )
        self.health = Health(
            stall_timeout_s=settings.metrics.stall_timeout_s,
            max_fetch_idle_s=max(30.0, settings.kafka.max_poll_interval_ms / 1000),
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._committer: Committer | None = None
        self._flow: FlowControl | None = None
        self._workers: dict[TopicPartition, PartitionWorker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: set once the consumer has joined the group and got its first assignment
        self.assigned = asyncio.Event()

    @property
    def circuit(self) -> CircuitBreaker:
        return self.wiring.circuit

    # -- lifecycle --------------------------------------------------------------------

    async def _start(self) -> None:
        s = self.settings
        self.metrics.build_info.info({"version": _version()})
        await self.wiring.start()
        with startup_step(Step.CONSUMER):
            consumer = await until_ready("kafka (consumer)", self._start_consumer, self._stopping)
        self._consumer = consumer
        self._committer = Committer(consumer, self.metrics, on_commit=self.health.committed)
        self._flow = FlowControl(
            consumer,
            self._workers,
            self.circuit,
            self.metrics,
            max_records=s.kafka.fetch_max_records,
            buffer_max_records=s.batch.buffer_max_records,
        )
        consumer.subscribe([s.kafka.topic], listener=_Rebalance(self))
        self._tasks = [
            asyncio.create_task(self._fetch_loop(), name="fetch-loop"),
            asyncio.create_task(self._commit_loop(), name="commit-loop"),
            asyncio.create_task(
                sample_dlq_table(self.wiring.pool, s.dlq.table, self.metrics, self._stopping),
                name="dlq-stats",
            ),
            asyncio.create_task(reclaim_periodically(self._stopping), name="gc-reclaim"),
        ]
        log.info("indexer started", extra={"topic": s.kafka.topic, "group_id": s.kafka.group_id})

    async def _start_consumer(self) -> AIOKafkaConsumer:
        """The group consumer, started; a failed attempt is closed before it is retried.

        Flow control pauses full partitions all the time: what a partition had fetched when
        paused is kept for its resume, not fetched again (`aiokafka_fixes`)."""
        keep_paused_fetches()
        consumer = AIOKafkaConsumer(**consumer_kwargs(self.settings))
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        return consumer

    async def _stop(self) -> None:
        """Stop fetching, drain workers within the shutdown deadline, commit, close clients."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._workers:
            await self._stop_workers(list(self._workers), self.settings.shutdown_timeout_s)
        if self._committer is not None:
            await self._committer.commit(self._workers, final=True)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        await self.wiring.stop()
        log.info("indexer stopped")

    async def run_until_stopped(self) -> None:
        """Wait until `request_stop()` is called or a background task dies, then stop."""
        fetch_task, commit_task = self._tasks[0], self._tasks[1]
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {stop_wait, fetch_task, commit_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop_wait.cancel()
        failed = [t for t in done if t is not stop_wait and not t.cancelled() and t.exception()]
        await self.stop()
        if failed:
            exc = failed[0].exception()
            assert exc is not None
            if not self.assigned.is_set() and not isinstance(exc, StreamIndexerError):
                # joining the group is the last start step (e.g. a topic or group ACL)
                raise explain(Step.CONSUMER, exc) from exc
            raise exc

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    def committed_offsets(self) -> dict[TopicPartition, int]:
        """What this member last committed, per partition it owns."""
        return {} if self._committer is None else dict(self._committer.committed)

    # -- fetching and committing ------------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer, flow, committer = self._consumer, self._flow, self._committer
        assert consumer is not None and flow is not None and committer is not None
        metrics, health = self.metrics, self.health
        while not self._stopping.is_set():
            batches = await consumer.getmany(
                timeout_ms=FETCH_TIMEOUT_MS, max_records=flow.fetch_limit()
            )
            health.fetched()
            for tp, records in batches.items():
                worker = self._workers.get(tp)
                if worker is None or not records:
                    continue
                metrics.records_consumed.inc(len(records))
                worker.submit(records)
                flow.submitted(tp, worker)
            flow.update()
            if not committer.report_lag(self._workers):
                health.caught_up()

    async def _commit_loop(self) -> None:
        """Commit every `KAFKA__COMMIT_INTERVAL_MS`, and sooner once a worker has drained
        its partition (at most every `DRAINED_COMMIT_GAP_S`): a consumer that caught up shows
        lag 0 at once, and a crash then replays nothing it had finished."""
        committer = self._committer
        assert committer is not None
        interval = self.settings.kafka.commit_interval_ms / 1000
        drained = self.wiring.drained
        gap = min(interval, DRAINED_COMMIT_GAP_S)
        last = time.monotonic()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), max(0.0, last + interval - time.monotonic()))
                await asyncio.sleep(max(0.0, last + gap - time.monotonic()))
            drained.clear()
            await committer.commit(self._workers)
            last = time.monotonic()

    # -- rebalancing ------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoked").inc()
        mine = [tp for tp in revoked if tp in self._workers]
        if mine:
            await self._stop_workers(mine, self.settings.rebalance_timeout_s)
        for tp in mine:
            self._workers.pop(tp, None)
            if self._flow is not None:
                self._flow.forget(tp)
            if self._committer is not None:
                self._committer.forget(tp)
        self.metrics.assigned_partitions.set(len(self._workers))

    async def _stop_workers(self, tps: list[TopicPartition], deadline_s: float) -> None:
        workers = [self._workers[tp] for tp in tps if tp in self._workers]
        await asyncio.gather(*(w.stop(deadline_s, drain=True) for w in workers))
        if self._committer is not None:
            await self._committer.commit(self._workers, tps, final=True)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assigned").inc()
        assert self._committer is not None
        context = self.wiring.context
        for tp in assigned:
            if tp not in self._workers:
                worker = PartitionWorker(tp.topic, tp.partition, context)
                if self._flow is not None:
                    worker.on_batch_taken = partial(self._flow.batch_taken, tp)
                self._workers[tp] = worker
                worker.start()
        await self._committer.load(assigned)
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

    def liveness(self) -> Verdict:
        """Alive while the fetch loop turns (it wakes at least every 200 ms)."""
        fetch_exited = bool(self._tasks) and self._tasks[0].done()
        # an open circuit or a DLQ store holding letters is an outage, reported by /readyz:
        # restarting the pod would not help
        outage = self.circuit.is_open or self.wiring.held.letters > 0
        return self.health.liveness(fetch_loop_exited=fetch_exited, outage=outage)

    def readiness(self) -> Verdict:
        return self.health.readiness(
            stopping=self._stopping.is_set(),
            circuit=self.circuit.state,
            partitions=len(self._workers),
            held_letters=self.wiring.held.summary(),
        )


def _version() -> str:
    from stream_indexer import __version__

    return __version__
