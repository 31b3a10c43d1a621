"""OpenSearch side, bulk writer: send pending writes until each is written, stale or poison.

The retry policy of every `_bulk` in one place. A whole-request failure (sink unreachable,
timeout, 429/5xx) is retried by `backoff.retry` under the writer's policy (forever in the
pipeline, where it feeds the circuit breaker: the sink being down never makes a record
poison; bounded for `dlq retry`). Per-item answers are read one by one and only the failed
items are re-sent: overload answers (429, 5xx, rejected execution) as long as the policy
allows, unknown record-level errors within the attempt budget (`RETRY__MAX_ATTEMPTS`,
`RETRY__MAX_ELAPSED_S`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from stream_indexer.backoff import RetryPolicy, retry
from stream_indexer.errors import (
    MappingRejectedError,
    PoisonRecordError,
    RetriesExhaustedError,
    SinkRequestAbandonedError,
)
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.bulk import ItemOutcome, ItemResult, PendingWrite
from stream_indexer.opensearch.circuit import CircuitBreaker
from stream_indexer.settings import RetrySettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BulkOutcome:
    """Where each write ended up."""

    written: list[PendingWrite] = field(default_factory=list)
    stale: list[PendingWrite] = field(default_factory=list)
    poison: list[tuple[PendingWrite, PoisonRecordError]] = field(default_factory=list)


class BulkWriter:
    """Shared by every partition worker of a process, and by `dlq retry` (bounded policy)."""

    def __init__(
        self,
        *,
        assembler: BulkAssembler,
        circuit: CircuitBreaker | None,
        policy: RetryPolicy,
        metrics: Metrics,
        retry: RetrySettings,
    ) -> None:
        self._assembler = assembler
        self._circuit = circuit
        #: how long whole-request failures and overload answers are retried, and the
        #: backoff between tries: forever in the pipeline (the sink being down never poisons
        #: a record), bounded for `dlq retry`
        self._policy = policy
        self._metrics = metrics
        self._retry = retry

    @property
    def assembler(self) -> BulkAssembler:
        """The request assembler this writer sends through (workers announce batches)."""
        return self._assembler

    async def write(
        self, writes: list[PendingWrite], *, log_extra: Mapping[str, Any] | None = None
    ) -> BulkOutcome:
        """Send `writes` until each is written, stale or poison (see the module doc).

        With a bounded policy, a request still failing at the end of the budget raises its
        SinkUnavailableError (nothing is poison because the sink was down)."""
        outcome = BulkOutcome()
        started = time.monotonic()
        pending = writes
        item_rounds = 0
        while pending:
            results = await retry(
                partial(self._send, pending),
                self._policy,
                on_retry=partial(self._request_failed, len(pending), dict(log_extra or {})),
            )
            pending = self._sort_items(pending, results, outcome, started)
            if pending:
                item_rounds += 1
                await asyncio.sleep(self._policy.backoff.delay(item_rounds))
        return outcome

    async def _send(self, pending: list[PendingWrite]) -> list[ItemResult]:
        """One request once the circuit lets it pass; a request abandoned because the sink
        answers again is re-sent at once (it is no evidence against the sink)."""
        while True:
            if self._circuit is not None:
                await self._circuit.wait_passable()
            try:
                results = await self._assembler.send(pending)
            except SinkRequestAbandonedError:
                continue
            if self._circuit is not None:
                self._circuit.record_success()
            return results

    def _request_failed(
        self, items: int, log_extra: dict[str, Any], attempt: int, exc: BaseException, _s: float
    ) -> None:
        if self._circuit is not None:
            self._circuit.record_failure()
        self._metrics.retry.labels(getattr(exc, "error_class", type(exc).__name__)).inc(items)
        log.warning("bulk request failed (attempt %d), retrying: %s", attempt, exc, extra=log_extra)

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
            elif self._budget_spent(write, kind, started):
                error = RetriesExhaustedError(
                    f"still failing after {write.attempts} attempts: {write.last_error}"
                )
                outcome.poison.append((write, error))
            else:
                metrics.retry.labels(error_type).inc()
                retry.append(write)
        return retry

    def _budget_spent(self, write: PendingWrite, kind: ItemOutcome, started: float) -> bool:
        """Record errors have the attempt budget; overload answers the policy's (forever in
        the pipeline, bounded for `dlq retry`)."""
        elapsed = time.monotonic() - started
        if kind is ItemOutcome.RECORD_ERROR and (
            write.attempts >= self._retry.max_attempts or elapsed >= self._retry.max_elapsed_s
        ):
            return True
        return self._policy.exhausted(write.attempts, elapsed)
