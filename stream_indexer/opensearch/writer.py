"""OpenSearch side, bulk writer: send pending writes until each is written, stale or poison.

The retry policy of the pipeline in one place. A whole-request failure (sink unreachable,
timeout, 429/5xx) is retried forever with backoff and full jitter and feeds the circuit
breaker: the sink being down never makes a record poison. Per-item answers are read one
by one and only the failed items are re-sent: overload answers (429, 5xx, rejected
execution) without limit, unknown record-level errors within the attempt budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stream_indexer.backoff import Backoff
from stream_indexer.errors import (
    MappingRejectedError,
    PoisonRecordError,
    RetriesExhaustedError,
    SinkRequestAbandonedError,
    SinkUnavailableError,
)
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.bulk import ItemOutcome, ItemResult, PendingWrite
from stream_indexer.opensearch.circuit import CircuitBreaker
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import RetrySettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BulkOutcome:
    """Where each write ended up."""

    written: list[PendingWrite] = field(default_factory=list)
    stale: list[PendingWrite] = field(default_factory=list)
    poison: list[tuple[PendingWrite, PoisonRecordError]] = field(default_factory=list)


class BulkWriter:
    """Shared by every partition worker of a process (`dlq retry` has its own loop)."""

    def __init__(
        self,
        *,
        sink: OpenSearchSink,
        circuit: CircuitBreaker,
        backoff: Backoff,
        metrics: Metrics,
        retry: RetrySettings,
        assembler: BulkAssembler,
    ) -> None:
        self._sink = sink
        self._circuit = circuit
        self._backoff = backoff
        self._metrics = metrics
        self._retry = retry
        self._assembler = assembler

    async def write(
        self, writes: list[PendingWrite], *, log_extra: Mapping[str, Any] | None = None
    ) -> BulkOutcome:
        outcome = BulkOutcome()
        started = time.monotonic()
        pending = writes
        request_failures = 0
        item_rounds = 0
        while pending:
            await self._circuit.wait_passable()
            try:
                results = await self._assembler.send(pending)
            except SinkRequestAbandonedError:
                continue  # stuck behind a sink that answers again: re-send now
            except SinkUnavailableError as exc:
                request_failures += 1
                self._circuit.record_failure()
                self._metrics.retry.labels(exc.error_class).inc(len(pending))
                log.warning(
                    "bulk request failed (attempt %d), retrying: %s",
                    request_failures,
                    exc,
                    extra=dict(log_extra or {}),
                )
                await asyncio.sleep(self._backoff.delay(request_failures))
                continue
            self._circuit.record_success()
            pending = self._sort_items(pending, results, outcome, started)
            if pending:
                item_rounds += 1
                await asyncio.sleep(self._backoff.delay(item_rounds))
        return outcome

    def _sort_items(
        self,
        pending: list[PendingWrite],
        results: list[ItemResult],
        outcome: BulkOutcome,
        started: float,
    ) -> list[PendingWrite]:
        """File each item's answer into `outcome`; return the writes to send again."""
        metrics = self._metrics
        retry: list[PendingWrite] = []
        for write, result in zip(pending, results, strict=True):
            kind = result.outcome
            if kind is ItemOutcome.WRITTEN:
                outcome.written.append(write)
                continue
            if kind is ItemOutcome.STALE:
                outcome.stale.append(write)
                continue
            error_type = result.error_type or f"http_{result.status}"
            metrics.bulk_item_errors.labels(error_type).inc()
            write.attempts += 1
            write.last_error = f"{error_type}: {result.reason or ''}".strip()
            if kind is ItemOutcome.POISON:
                outcome.poison.append((write, MappingRejectedError(write.last_error)))
            elif kind is ItemOutcome.RECORD_ERROR and self._budget_spent(write, started):
                error = RetriesExhaustedError(
                    f"still failing after {write.attempts} attempts: {write.last_error}"
                )
                outcome.poison.append((write, error))
            else:
                metrics.retry.labels(error_type).inc()
                retry.append(write)
        return retry

    def _budget_spent(self, write: PendingWrite, started: float) -> bool:
        return (
            write.attempts >= self._retry.max_attempts
            or time.monotonic() - started >= self._retry.max_elapsed_s
        )
