"""Stand-ins for the aiokafka consumer and records in unit tests of the service's parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from stream_indexer.observability.metrics import Metrics
from stream_indexer.pipeline.worker import PartitionWorker, WorkerContext
from stream_indexer.settings import load_settings


@dataclass
class Record:
    offset: int
    value: bytes = b"{}"
    key: bytes | None = b"1"


@dataclass
class FakeConsumer:
    """Records pause/resume/commit calls; answers committed() and highwater()."""

    paused: set[TopicPartition] = field(default_factory=set)
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    group_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    highwaters: dict[TopicPartition, int] = field(default_factory=dict)
    fail_commits: bool = False

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        if self.fail_commits:
            raise KafkaError("coordinator not available")
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.group_offsets.get(tp)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)


def worker_context(**settings: Any) -> WorkerContext:
    """A context with real settings and metrics; the sinks are never reached in these tests."""
    ctx: Any = WorkerContext(
        settings=load_settings(settings),
        dead_letters=None,  # type: ignore[arg-type]
        metrics=Metrics(CollectorRegistry()),
        loader=None,
        bulk_writer=None,  # type: ignore[arg-type]
        group_id="g",
    )
    return ctx  # type: ignore[no-any-return]


def worker(tp: TopicPartition, ctx: WorkerContext) -> PartitionWorker:
    return PartitionWorker(tp.topic, tp.partition, ctx)
