"""Service, commit step: per partition, commit the tracker's watermark when it moved.

Checkpoint order as in Quix Streams: a batch completes in its `OffsetTracker` only after the
sink has it and its dead letters are written, so whatever `committable` says may be
committed. A failed commit is logged and tried again on the next round (the watermark only
grows; nothing is lost by waiting). The same object reports lag against the high-water mark
and the age of the oldest uncommitted batch, which both read the committed offsets.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from stream_indexer.observability.metrics import Metrics
from stream_indexer.pipeline.worker import PartitionWorker

log = logging.getLogger(__name__)


class Committer:
    """Commits for one consumer; `committed` is what this member last committed."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        metrics: Metrics,
        *,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._on_commit = on_commit
        self.committed: dict[TopicPartition, int] = {}

    async def commit(
        self,
        workers: Mapping[TopicPartition, PartitionWorker],
        tps: Iterable[TopicPartition] | None = None,
        *,
        final: bool = False,
    ) -> None:
        """Commit each partition's watermark if it moved; log and keep going on failure."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in list(workers) if tps is None else tps:
            worker = workers.get(tp)
            if worker is None:
                continue
            committable = worker.tracker.committable
            if committable is not None and committable > self.committed.get(tp, -1):
                offsets[tp] = OffsetAndMetadata(committable, "")
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed%s: %s", " (final)" if final else "", exc)
            return
        if self._on_commit is not None:
            self._on_commit()
        self._metrics.commits.inc(len(offsets))
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset
            self._metrics.committed_offset.labels(tp.topic, str(tp.partition)).set(meta.offset)

    async def load(self, tps: Iterable[TopicPartition]) -> None:
        """What the group committed before this member owned `tps` (lag needs a base)."""
        for tp in tps:
            with contextlib.suppress(KafkaError):
                committed = await self._consumer.committed(tp)
                if committed is not None:
                    self.committed[tp] = committed

    def forget(self, tp: TopicPartition) -> None:
        """A revoked partition: drop its offset and its metric series."""
        self.committed.pop(tp, None)
        labels = (tp.topic, str(tp.partition))
        metrics = self._metrics
        for gauge in (
            metrics.consumer_lag,
            metrics.oldest_uncommitted_age,
            metrics.committed_offset,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def report_lag(self, workers: Mapping[TopicPartition, PartitionWorker]) -> bool:
        """Set lag and oldest-uncommitted age per partition; True when any partition lags.

        Lag is the fetch response's high-water mark minus the committed offset (the
        high-water mark is right on every broker; `end_offsets()` is not on all of them).
        """
        consumer: Any = self._consumer
        metrics = self._metrics
        now = time.monotonic()
        behind = False
        for tp, worker in workers.items():
            labels = (tp.topic, str(tp.partition))
            highwater = consumer.highwater(tp)
            committed = self.committed.get(tp)
            if highwater is not None and committed is not None:
                lag = max(0, highwater - committed)
                metrics.consumer_lag.labels(*labels).set(lag)
                behind = behind or lag > 0
            since = worker.tracker.oldest_pending_since()
            metrics.oldest_uncommitted_age.labels(*labels).set(
                0.0 if since is None else now - since
            )
        return behind


__all__ = ["Committer"]
