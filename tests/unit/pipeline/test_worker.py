"""A partition worker's stop is idempotent, also after it had to abandon work."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from prometheus_client import CollectorRegistry

from stream_indexer.backoff import Backoff
from stream_indexer.observability.metrics import Metrics
from stream_indexer.pipeline.worker import PartitionWorker
from stream_indexer.settings import load_settings


class _Context:
    """Only what `stop()` touches: the settings, the backoff and the queue-size gauge."""

    def __init__(self) -> None:
        self.settings = load_settings()
        self.metrics = Metrics(CollectorRegistry())
        self.backoff = Backoff()


async def test_stop_after_an_abandoning_stop_returns_quietly() -> None:
    worker = PartitionWorker("t", 0, cast(Any, _Context()))
    worker._task = asyncio.create_task(asyncio.sleep(100))  # stands in for a batch in flight
    await worker.stop(0.0, drain=False)
    assert worker._task.cancelled()
    await worker.stop(1.0)  # must not raise CancelledError


async def test_a_stopping_worker_asks_flow_control_for_no_more_records() -> None:
    worker = PartitionWorker("t", 0, cast(Any, _Context()))
    worker.on_batch_taken = lambda: None
    await worker.stop(1.0)
    assert worker.on_batch_taken is None
