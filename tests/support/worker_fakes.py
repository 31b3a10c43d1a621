"""Test support: partition workers over a sink that answers every item at once (unit tests
of the worker and what it shares with other workers, no servers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.worker import WorkerContext
from stream_indexer.settings import load_settings


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class AnsweringSink:
    """Answers every item as written; records the size of each request, and calls
    `on_request` (if set) while the request is in flight."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.answered = asyncio.Event()
        self.on_request: Callable[[], None] | None = None

    async def bulk(self, body: bytes, items: int) -> dict[str, object]:
        if self.on_request is not None:
            self.on_request()
        self.sizes.append(items)
        self.answered.set()
        return {"items": [{"index": {"status": 201}}] * items}


def worker_context(sink: AnsweringSink) -> tuple[WorkerContext, BulkAssembler]:
    """Batches of two records that linger a minute; one request in flight at most."""
    settings = load_settings({"batch.max_records": 2, "batch.linger_ms": 60_000})
    metrics = Metrics(CollectorRegistry())
    assembler = BulkAssembler(
        sink,  # type: ignore[arg-type]
        metrics,
        max_in_flight=1,
        max_docs=100,
        max_bytes=1 << 20,
    )
    ctx = WorkerContext(
        settings=settings,
        dead_letters=None,  # type: ignore[arg-type]  # no poison here
        metrics=metrics,
        loader=None,
        bulk_writer=BulkWriter(
            assembler=assembler,
            circuit=None,
            policy=RetryPolicy.forever(Backoff()),
            metrics=metrics,
            retry=settings.retry,
        ),
        group_id="g",
    )
    return ctx, assembler
