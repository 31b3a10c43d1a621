"""Dead letters, repair path one (`dlq retry`): re-process table rows straight to OpenSearch.

Each selected row's stored key and value go through the same steps as a consumed record:
`decode_event`, hydration for thin events, the document or tombstone the worker builds
(`documents.pending_write`), one `_bulk` per batch with `external_gte`. A row whose write now lands
(or is stale: a newer version is already indexed) is resolved `indexed` or `stale` and
stays as history; a row that fails again stays open with `attempts + 1`, its new
`last_error` and error class. A row the running indexer updated meanwhile (its
`last_attempt_at` moved) is left as the indexer wrote it. Only open rows are selected.

Writes go through the pipeline's `BulkWriter` with a bounded policy: whole-request sink
failures and overload answers are retried with backoff up to the attempt budget, then the
command stops (nothing is marked failed because OpenSearch was down).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.dlq.query import DlqQueries, DlqRow, RowFilter
from stream_indexer.dlq.resolver import INDEXED, STALE
from stream_indexer.dlq.table import clean_text
from stream_indexer.errors import (
    PoisonRecordError,
)
from stream_indexer.models import ListingEvent
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.decode import decode_event
from stream_indexer.pipeline.documents import pending_writes
from stream_indexer.pipeline.hydrate import SourceLoader
from stream_indexer.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryOptions:
    where: RowFilter = field(default_factory=lambda: RowFilter(state="open"))
    limit: int | None = None
    batch_size: int = 500
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What happened (or, in a dry run, would happen) to one row."""

    row_id: int
    listing_id: int | None
    #: written, stale, failed; dry run: would_write, would_fail
    result: str
    detail: str


@dataclass(slots=True)
class RetryReport:
    outcomes: list[RowOutcome] = field(default_factory=list)
    #: rows the indexer changed while we retried them (left as the indexer wrote them)
    changed_meanwhile: int = 0

    def count(self, *results: str) -> int:
        return sum(1 for o in self.outcomes if o.result in results)

    @property
    def retried(self) -> int:
        return len(self.outcomes)

    @property
    def succeeded(self) -> int:
        return self.count("written", "stale")

    @property
    def failed_again(self) -> int:
        return self.count("failed")

    def to_json(self, *, dry_run: bool) -> dict[str, Any]:
        if dry_run:
            return {
                "dry_run": True,
                "selected": self.retried,
                "would_write": self.count("would_write"),
                "would_fail": self.count("would_fail"),
                "rows": [_outcome_json(o) for o in self.outcomes],
            }
        return {
            "dry_run": False,
            "retried": self.retried,
            "succeeded": self.succeeded,
            "written": self.count("written"),
            "stale": self.count("stale"),
            "failed_again": self.failed_again,
            "changed_meanwhile": self.changed_meanwhile,
            "rows": [_outcome_json(o) for o in self.outcomes],
        }


def _outcome_json(outcome: RowOutcome) -> dict[str, Any]:
    return {
        "id": outcome.row_id,
        "listing_id": outcome.listing_id,
        "result": outcome.result,
        "detail": outcome.detail,
    }


@dataclass(slots=True)
class _Failure:
    row: DlqRow
    error_class: str
    message: str


class DlqRetrier:
    """Runs one `dlq retry` over `queries`' table into `sink` (started by the caller)."""

    def __init__(
        self,
        settings: Settings,
        queries: DlqQueries,
        sink: OpenSearchSink,
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._queries = queries
        self._loader: SourceLoader | None = None
        self._on_progress = on_progress
        backoff = Backoff.from_settings(settings.retry)
        metrics = Metrics(CollectorRegistry())  # the tool reports rows, not metrics
        opensearch = settings.opensearch
        self._assembler = BulkAssembler(
            sink,
            metrics,
            max_in_flight=1,
            max_docs=opensearch.bulk_max_docs,
            max_bytes=opensearch.bulk_max_bytes,
        )
        self._writer = BulkWriter(
            assembler=self._assembler,
            circuit=None,
            policy=RetryPolicy.bounded(backoff, attempts=settings.retry.max_attempts),
            metrics=metrics,
            retry=settings.retry,
        )

    async def run(self, options: RetryOptions) -> RetryReport:
        report = RetryReport()
        now = await self._queries.now()
        last_id = 0
        remaining = options.limit
        await self._assembler.start()
        try:
            while remaining is None or remaining > 0:
                size = (
                    options.batch_size if remaining is None else min(options.batch_size, remaining)
                )
                rows = await self._queries.rows_after(options.where, now, last_id, size)
                if not rows:
                    break
                last_id = rows[-1].id
                if remaining is not None:
                    remaining -= len(rows)
                await self._batch(rows, report, dry_run=options.dry_run)
                if self._on_progress is not None:
                    self._on_progress(len(rows))
        finally:
            await self._assembler.stop()
            if self._loader is not None:
                await self._loader.stop()
        return report

    async def _batch(self, rows: Sequence[DlqRow], report: RetryReport, *, dry_run: bool) -> None:
        failures: list[_Failure] = []
        decoded: list[tuple[DlqRow, ListingEvent]] = []
        max_bytes = self._settings.dlq.max_value_bytes
        for row in rows:
            try:
                decoded.append((row, decode_event(row.key, row.value, max_bytes=max_bytes)))
            except PoisonRecordError as exc:
                failures.append(_Failure(row, exc.error_class, str(exc)))
        if dry_run:
            for row, event in decoded:
                thin = " (thin: loaded from the source table)" if event.is_thin else ""
                report.outcomes.append(
                    RowOutcome(
                        row.id,
                        row.listing_id,
                        "would_write",
                        f"{event.action} listing {event.listing_id} version {event.version}{thin}",
                    )
                )
            for failure in failures:
                report.outcomes.append(_failed(failure, "would_fail"))
            return
        writes = await self._prepare(decoded, failures)
        succeeded: list[tuple[DlqRow, str]] = []
        if writes:
            await self._write(writes, succeeded, failures)
        resolved = await self._queries.mark_succeeded(
            [(row, INDEXED if result == "written" else STALE) for row, result in succeeded]
        )
        updated = await self._queries.mark_failed(
            [(f.row, clean_text(f.error_class), clean_text(f.message)) for f in failures]
        )
        report.changed_meanwhile += len(succeeded) - resolved + len(failures) - updated
        for row, result in succeeded:
            report.outcomes.append(RowOutcome(row.id, row.listing_id, result, ""))
        report.outcomes.extend(_failed(f, "failed") for f in failures)

    async def _prepare(
        self, decoded: list[tuple[DlqRow, ListingEvent]], failures: list[_Failure]
    ) -> list[PendingWrite]:
        thin_ids = [event.listing_id for _row, event in decoded if event.is_thin]
        hydrated: dict[int, Any] = {}
        if thin_ids:
            if self._loader is None:
                settings = self._settings
                self._loader = SourceLoader(settings.source_dsn, settings.source, pool_max_size=2)
                await self._loader.start()
            hydrated = await self._loader.load(thin_ids)
        writes, invalid = pending_writes(
            ((event, row) for row, event in decoded), hydrated, datetime.now(UTC).isoformat()
        )
        failures.extend(_Failure(row, error.error_class, str(error)) for row, error in invalid)
        return writes

    async def _write(
        self,
        writes: list[PendingWrite],
        succeeded: list[tuple[DlqRow, str]],
        failures: list[_Failure],
    ) -> None:
        """Bulk-write until every item landed, was stale, was rejected or ran out of tries."""
        outcome = await self._writer.write(writes)
        succeeded.extend((write.context, "written") for write in outcome.written)
        succeeded.extend((write.context, "stale") for write in outcome.stale)
        failures.extend(
            _Failure(write.context, error.error_class, str(error))
            for write, error in outcome.poison
        )


def _failed(failure: _Failure, result: str) -> RowOutcome:
    return RowOutcome(
        failure.row.id,
        failure.row.listing_id,
        result,
        f"{failure.error_class}: {failure.message}",
    )


__all__ = ["DlqRetrier", "RetryOptions", "RetryReport", "RowOutcome"]
