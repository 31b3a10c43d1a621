"""Drift check and repair (`stream-indexer verify`): the index compared with the source table.

Two ways to look: a sample (random source rows looked up by id in the index, plus random
live documents looked up in the source, which is what finds `extra` documents), or a full
scan (the source table and the index each read in id order, a page at a time, and merged
like two sorted files: memory stays at a page per side however large both are).

The index and the source are read at different instants while live indexing goes on, so a
listing changing right then looks drifted. Every candidate is therefore looked up again
(both sides) once `VERIFY__RECHECK_AFTER_S` has passed since it was seen; only what still
drifts is drift, the rest is counted as settled.

`--repair` rewrites each confirmed listing from the source through the pipeline's own
document path (`documents.versioned_write`) and `BulkWriter`, with `external_gte` and the
row's version: a newer event written meanwhile wins (a 409, counted `newer_meanwhile`), so
a repair can never undo fresher news. An `extra` document becomes a tombstone at its own
version, so that a late stale event cannot bring it back. The repaired listings are then
looked up once more; the run is clean only if none of them still drifts.

Source reads go through `SourceReads`: a source database that goes away mid-check is waited
for (`VERIFY__SOURCE_RETRY_S`) and the scan resumes after the last row it compared.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.models import Listing
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.documents import versioned_write
from stream_indexer.pipeline.source_scan import SourceRow, SourceScanner
from stream_indexer.repair.drift import DRIFT_KINDS, Finding, IndexDoc, compare
from stream_indexer.repair.index_scan import IndexReader
from stream_indexer.repair.source_reads import SourceReads
from stream_indexer.repair.verify_report import (
    FAILED,
    NEWER_MEANWHILE,
    REPAIRED,
    Mode,
    VerifyReport,
)
from stream_indexer.settings import Settings

#: the most documents one random sample request may ask for (`index.max_result_window`)
MAX_SAMPLE = 10_000


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    mode: Mode = "sample"
    sample: int = 1_000
    repair: bool = False


@dataclass(frozen=True, slots=True)
class _Drifted:
    listing_id: int
    finding: Finding
    row: SourceRow | None
    doc: IndexDoc | None


class Verifier:
    """One verify run over `settings`' source table and search alias."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        before_recheck: Callable[[Sequence[int]], Awaitable[None]] | None = None,
        before_repair: Callable[[Sequence[int]], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._verify = settings.verify
        self._on_start = on_start
        #: (source rows, index documents) checked since the last call
        self._on_progress = on_progress
        #: run just before candidates are looked up again, and before each repair batch is
        #: written (tests change the index there, as live indexing would)
        self._before_recheck = before_recheck
        self._before_repair = before_repair
        backoff = Backoff.from_settings(settings.retry)
        self._policy = RetryPolicy.bounded(backoff, attempts=settings.retry.max_attempts)
        self._metrics = Metrics(CollectorRegistry())  # the bulk path's own; not exported
        self._scanner = SourceScanner(settings.source_dsn, settings.source)
        # a source that goes away mid-check is waited for, and the scan resumes where it was
        self._source = SourceReads(
            self._scanner, RetryPolicy.bounded(backoff, elapsed_s=self._verify.source_retry_s)
        )
        # verify never creates indices or aliases, and a read needs no write alias
        self._unmanaged = settings.model_copy(
            update={"opensearch": settings.opensearch.model_copy(update={"create_index": False})}
        )
        # reads only: its client is what counts (a sink with its own bulk target skips the
        # alias checks at start; nothing is ever written through it)
        self._read_sink = OpenSearchSink(self._unmanaged, bulk_index=settings.opensearch.index)
        self._repair_sink: OpenSearchSink | None = None
        self._assembler: BulkAssembler | None = None
        self._writer: BulkWriter | None = None
        self._reader: IndexReader | None = None
        self._candidates: list[int] = []
        self._first_seen = 0.0

    async def run(self, options: VerifyOptions) -> VerifyReport:
        started = time.monotonic()
        sample = min(options.sample, MAX_SAMPLE) if options.mode == "sample" else None
        report = VerifyReport(options.mode, sample, options.repair)
        try:
            await self._scanner.start()
            await self._read_sink.start()
            self._reader = IndexReader(
                self._read_sink.client,
                self._settings.opensearch.index,
                self._policy,
                page_size=self._verify.page_size,
            )
            await self._reader.resolve()
            if options.repair:
                await self._start_repair()
            if sample is None:
                await self._full(report)
            else:
                await self._sample(report, sample)
            await self._flush(report)
        finally:
            await self._stop()
        report.duration_s = time.monotonic() - started
        report.finished_at = time.time()
        return report

    # -- reading -------------------------------------------------------------------------

    async def _full(self, report: VerifyReport) -> None:
        """Merge the id-ordered source and index streams, one page of each in memory."""
        assert self._reader is not None
        if self._on_start is not None:
            self._on_start(await self._source.count())
        rows = self._source_rows()
        docs = self._reader.scan()
        row, doc = await anext(rows, None), await anext(docs, None)
        while row is not None or doc is not None:
            if doc is None or (row is not None and row.listing_id < doc.listing_id):
                await self._consider(report, row, None)
                report.checked_rows += 1
                row = await anext(rows, None)
            elif row is None or doc.listing_id < row.listing_id:
                await self._consider(report, None, doc)
                report.checked_docs += 1
                self._progress(0, 1)
                doc = await anext(docs, None)
            else:
                await self._consider(report, row, doc)
                report.checked_rows += 1
                report.checked_docs += 1
                self._progress(0, 1)
                row, doc = await anext(rows, None), await anext(docs, None)

    async def _source_rows(self) -> AsyncIterator[SourceRow]:
        after = 0
        while page := await self._source.page(after, self._verify.page_size):
            for row in page:
                yield row
            self._progress(len(page), 0)
            after = page[-1].listing_id

    async def _sample(self, report: VerifyReport, n: int) -> None:
        """`n` random source rows against the index, `n` random live documents against the
        source (only those find documents whose row is gone)."""
        assert self._reader is not None
        total = await self._source.count()
        if self._on_start is not None:
            self._on_start(min(n, total) * 2)
        percent = 100.0 if total <= n else 100.0 * n / total
        rows = await self._source.sample(percent, n) if total else []
        docs = await self._reader.docs([row.listing_id for row in rows])
        for row in rows:
            await self._consider(report, row, docs.get(row.listing_id))
        report.checked_rows += len(rows)
        report.checked_docs += len(docs)
        self._progress(len(rows), 0)
        seen = {row.listing_id for row in rows}
        live = [doc for doc in await self._reader.random_live(n) if doc.listing_id not in seen]
        found = await self._source.rows([doc.listing_id for doc in live])
        for doc in live:
            await self._consider(report, found.get(doc.listing_id), doc)
        report.checked_docs += len(live)
        report.checked_rows += len(found)
        self._progress(len(live), 0)

    def _progress(self, rows: int, docs: int) -> None:
        if self._on_progress is not None and (rows or docs):
            self._on_progress(rows, docs)

    # -- findings ------------------------------------------------------------------------

    async def _consider(
        self, report: VerifyReport, row: SourceRow | None, doc: IndexDoc | None
    ) -> None:
        finding = compare(row, doc)
        if finding is Finding.OK:
            return
        listing_id = row.listing_id if row is not None else doc.listing_id  # type: ignore[union-attr]
        if finding not in DRIFT_KINDS:
            report.found(finding, listing_id)
            return
        if not self._candidates:
            self._first_seen = time.monotonic()
        self._candidates.append(listing_id)
        if len(self._candidates) >= self._verify.page_size:
            await self._flush(report)

    async def _flush(self, report: VerifyReport) -> None:
        """Look the candidates up again once they are old enough; count (and repair) what
        still drifts."""
        ids, self._candidates = self._candidates, []
        if not ids:
            return
        wait = self._first_seen + self._verify.recheck_after_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._before_recheck is not None:
            await self._before_recheck(ids)
        drifted = []
        for item in await self._lookup(ids):
            if item.finding in DRIFT_KINDS:
                report.found(item.finding, item.listing_id)
                drifted.append(item)
            else:
                report.settled += 1
        if drifted and self._writer is not None:
            await self._repair(report, drifted)

    async def _lookup(self, ids: Sequence[int]) -> list[_Drifted]:
        assert self._reader is not None
        rows = await self._source.rows(ids)
        docs = await self._reader.docs(ids)
        return [
            _Drifted(i, compare(rows.get(i), docs.get(i)), rows.get(i), docs.get(i)) for i in ids
        ]

    # -- repair --------------------------------------------------------------------------

    async def _start_repair(self) -> None:
        """Repairs go through the write alias, like the pods' writes (a missing one is bad
        configuration naming `OPENSEARCH__WRITE_ALIAS`)."""
        self._repair_sink = OpenSearchSink(self._unmanaged)
        await self._repair_sink.start()
        opensearch_settings = self._settings.opensearch
        self._assembler = BulkAssembler(
            self._repair_sink,
            self._metrics,
            max_in_flight=1,
            max_docs=opensearch_settings.bulk_max_docs,
            max_bytes=opensearch_settings.bulk_max_bytes,
        )
        await self._assembler.start()
        self._writer = BulkWriter(
            assembler=self._assembler,
            circuit=None,
            policy=self._policy,
            metrics=self._metrics,
            retry=self._settings.retry,
        )

    async def _repair(self, report: VerifyReport, drifted: list[_Drifted]) -> None:
        assert self._writer is not None
        if self._before_repair is not None:
            await self._before_repair([item.listing_id for item in drifted])
        indexed_at = datetime.now(UTC).isoformat()
        writes = [_repair_write(item, indexed_at) for item in drifted]
        outcome = await self._writer.write(writes)
        for write in outcome.written:
            report.repaired(REPAIRED, write.listing_id)
        for write in outcome.stale:
            report.repaired(NEWER_MEANWHILE, write.listing_id)
        for write, _error in outcome.poison:
            report.repaired(FAILED, write.listing_id)
        written = [write.listing_id for write in outcome.written]
        for item in await self._lookup(written) if written else []:
            if item.finding in DRIFT_KINDS:
                report.still_drifting.add(item.listing_id)

    async def _stop(self) -> None:
        if self._assembler is not None:
            await self._assembler.stop()
        for component in (self._repair_sink, self._read_sink, self._scanner):
            if component is not None:
                await component.stop()


def _repair_write(item: _Drifted, indexed_at: str) -> PendingWrite:
    """The versioned write that fixes one drifted listing (see the module doc)."""
    event_id = uuid.uuid4()
    if item.finding is Finding.EXTRA:
        assert item.doc is not None
        return versioned_write(item.listing_id, item.doc.version, event_id, None, indexed_at)
    assert item.row is not None and item.row.version is not None
    assert isinstance(item.row.listing, Listing)
    document = item.row.listing.to_document()
    return versioned_write(item.listing_id, item.row.version, event_id, document, indexed_at)


__all__ = ["MAX_SAMPLE", "Verifier", "VerifyOptions"]
