"""Reindex, backfill: the source table copied into the new index, page by page, resumable.

Pages come from `SourceScanner` in id order (keyset pagination); each row becomes the same
document an event of its version would write (`documents.versioned_write`) and goes through
the pipeline's `BulkWriter` with `external_gte`, so a row older than what the catch-up or a
carried tombstone already wrote loses, and a newer one wins, whatever the order. A row
that breaks the contract, or that the new mapping rejects, is dead-lettered as a thin
`index` event of its listing and version (a `dlq replay` of it re-reads the row). The
checkpoint (`last_id`) moves only after a page's writes are acknowledged and its letters
stored: a rerun after a crash re-sends at most one page.

Before the rows, every tombstone of the old index is copied with its version: the source
has no row for a deleted listing, and without it a late, stale event could resurrect one
after the cutover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import SimpleNamespace
from typing import TypeVar

import orjson
from opensearchpy import AsyncOpenSearch

from stream_indexer.backoff import RetryPolicy, retry
from stream_indexer.dlq.letters import dead_letter_for
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.redaction import Redactor
from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import PoisonRecordError, SchemaInvalidError
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch import aliases
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.documents import versioned_write
from stream_indexer.pipeline.source_scan import SourceRow, SourceScanner
from stream_indexer.reindex.state import ReindexRun, RunStore
from stream_indexer.reindex.throttle import Aimd, LiveGate, PageSignal, TokenBucket
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
#: event ids of documents a reindex writes are derived from this namespace
REINDEX_NAMESPACE = uuid.UUID("8f5b1a52-1c55-4a4e-9d8f-2f6f1d3c7a10")


def reindex_event_id(run_id: int, listing_id: int, version: int) -> uuid.UUID:
    """A stable event id for a document the backfill writes (the same on a rerun)."""
    return uuid.uuid5(REINDEX_NAMESPACE, f"{run_id}:{listing_id}:{version}")


@dataclass(slots=True)
class BackfillTools:
    """What the backfill works with (made and closed by the caller)."""

    settings: Settings
    store: RunStore
    client: AsyncOpenSearch
    writer: BulkWriter
    dead_letters: DeadLetterWriter
    metrics: Metrics
    #: the policy for the source and the DLQ stores being down: until the run is stopped
    policy: RetryPolicy
    #: the live group's total lag at the latest probe (a background task reads it), or None
    live_lag: Callable[[], int | None]
    #: called after every page: (rows in it, next page size, why it shrank or "")
    on_page: Callable[[int, int, str], Awaitable[None]]
    redactor: Redactor | None = None
    #: holds the backfill while the live group is behind (fed by the lag probe), or None
    live_gate: LiveGate | None = None


class Backfill:
    """Tombstone carry-over, then the source rows, for one run."""

    def __init__(self, tools: BackfillTools, run: ReindexRun, *, max_rate: float) -> None:
        self._t = tools
        self._run = run
        r = tools.settings.reindex
        self.aimd = Aimd(
            maximum=r.page_size,
            minimum=r.min_page_size,
            latency_factor=r.latency_factor,
            lag_growth=r.live_lag_growth,
        )
        self.bucket = TokenBucket(max_rate, burst=max(max_rate, float(r.page_size)))
        self._consumer_group = f"{tools.settings.kafka.group_id}.reindex.{run.id}"

    async def carry_tombstones(self) -> int:
        """Copy every tombstone of the old index into the new one, with its version."""
        t, run = self._t, self._run
        carried = 0
        if run.old_index is not None:
            async for page in aliases.tombstones(t.client, run.old_index):
                indexed_at = datetime.now(UTC).isoformat()
                writes = [
                    versioned_write(
                        listing_id,
                        version,
                        reindex_event_id(run.id, listing_id, version),
                        None,
                        indexed_at,
                    )
                    for listing_id, version in page
                ]
                outcome = await t.writer.write(writes, log_extra={"reindex_run": run.id})
                for write, error in outcome.poison:  # a tombstone fits any sane mapping
                    log.error(
                        "tombstone of listing %d not carried: %s",
                        write.listing_id,
                        error,
                        extra={"reindex_run": run.id},
                    )
                carried += len(outcome.written) + len(outcome.stale)
        await t.store.update(run, tombstones_carried=carried, tombstones_done=True)
        return carried

    async def copy_rows(self, scanner: SourceScanner) -> None:
        """Page through the source from the run's checkpoint to its end. The next page is
        read while the current one is being written (its first id is known: keyset)."""
        t, run = self._t, self._run
        size = self.aimd.size
        rows = await self._retry(partial(scanner.page, run.last_id, size))
        while rows:
            held = await self._wait_for_live()
            await self.bucket.take(len(rows))
            upcoming = asyncio.create_task(
                self._retry(partial(scanner.page, rows[-1].listing_id, self.aimd.size))
            )
            try:
                signal = await self._write_page(rows)
                signal.live_lag = t.live_lag()
                signal.live_behind = bool(held) or (t.live_gate is not None and t.live_gate.behind)
                size = self.aimd.observe(signal, len(rows))
                await t.on_page(len(rows), size, held or self.aimd.reason)
            except BaseException:
                upcoming.cancel()
                with contextlib.suppress(BaseException):
                    await upcoming
                raise
            rows = await upcoming
            if len(rows) > size:  # the AIMD shrank the page while this one was read
                rows = rows[:size]

    async def slow_start_with_live_traffic(self) -> None:
        """Before the first page: wait for the live watch's first rate (two readings), and
        when the live topic is being written to, start with small pages (`Aimd.slow_start`);
        a quiet topic gets full pages from the first."""
        gate = self._t.live_gate
        if gate is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                gate.rated.wait(), 2 * self._t.settings.reindex.probe_interval_s + 2
            )
        if gate.live_traffic:
            self.aimd.slow_start()

    async def _wait_for_live(self) -> str:
        """Wait while the live gate holds, at most `REINDEX__LIVE_HOLD_MAX_S` at a time;
        return "live_hold" when it held (for the throttle metric), else ""."""
        gate = self._t.live_gate
        if gate is None or not await gate.wait(
            self._t.settings.reindex.live_hold_max_s, stage="backfill"
        ):
            return ""
        return "live_hold"

    async def _write_page(self, rows: list[SourceRow]) -> PageSignal:
        t, run = self._t, self._run
        indexed_at = datetime.now(UTC).isoformat()
        writes: list[PendingWrite] = []
        letters: list[DeadLetter] = []
        for row in rows:
            if isinstance(row.listing, SchemaInvalidError) or row.version is None:
                error: PoisonRecordError = (
                    row.listing
                    if isinstance(row.listing, SchemaInvalidError)
                    else SchemaInvalidError(f"source row for listing {row.listing_id}: no version")
                )
                letters.append(self._letter(row, error, 1))
                continue
            event_id = reindex_event_id(run.id, row.listing_id, row.version)
            writes.append(
                versioned_write(
                    row.listing_id,
                    row.version,
                    event_id,
                    row.listing.to_document(),
                    indexed_at,
                    row,
                )
            )
        overload_before = _retries(t.metrics)
        started = time.monotonic()
        if writes:
            chunks = max(1, t.settings.reindex.bulk_in_flight)
            step = -(-len(writes) // chunks)
            outcomes = await asyncio.gather(
                *(
                    t.writer.write(writes[i : i + step], log_extra={"reindex_run": run.id})
                    for i in range(0, len(writes), step)
                )
            )
            for outcome in outcomes:
                for write, error in outcome.poison:
                    letters.append(self._letter(write.context, error, write.attempts))
        latency = time.monotonic() - started
        if letters:
            delivery = t.dead_letters.deliver(letters)
            await self._retry(delivery.attempt)
        await t.store.update(
            run,
            last_id=rows[-1].listing_id,
            rows_done=run.rows_done + len(rows),
            dead_lettered=run.dead_lettered + len(letters),
        )
        return PageSignal(latency_s=latency, overloaded=int(_retries(t.metrics) - overload_before))

    def _letter(self, row: SourceRow, error: BaseException, attempts: int) -> DeadLetter:
        """A dead letter for a source row: a thin `index` event of its listing and version,
        so that replaying it reads the (by then, fixed) row again."""
        settings = self._t.settings
        event = {
            "event_id": str(reindex_event_id(self._run.id, row.listing_id, row.version or 0)),
            "action": "index",
            "listing_id": row.listing_id,
            "version": row.version if row.version is not None else 0,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        record = SimpleNamespace(
            topic=settings.kafka.topic,
            partition=-1,
            offset=-1,
            timestamp=None,
            key=str(row.listing_id).encode(),
            value=orjson.dumps(event),
            headers=[("x-reindex-run", str(self._run.id).encode())],
        )
        log.warning(
            "dead-lettering source row: %s",
            error,
            extra={"reindex_run": self._run.id, "listing_id": row.listing_id},
        )
        return dead_letter_for(
            record,
            error,
            attempts=attempts,
            consumer_group=self._consumer_group,
            redactor=self._t.redactor,
        )

    async def _retry(self, operation: Callable[[], Awaitable[T]]) -> T:
        def down(attempt: int, exc: BaseException, _delay: float) -> None:
            log.warning("reindex backfill waiting (attempt %d): %s", attempt, exc)

        return await retry(operation, self._t.policy, on_retry=down)


def _retries(metrics: Metrics) -> float:
    """Items the bulk writer has re-sent so far (overload answers and failed requests)."""
    total = 0.0
    for family in metrics.retry.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


async def sleep_until(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` or until `stop` is set; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


__all__ = ["Backfill", "BackfillTools", "reindex_event_id", "sleep_until"]
