"""Dead letters, closing side: resolve open DLQ rows once their listing is indexed at or past
their version (docs/dlq.md, "Lifecycle").

When the pipeline writes a listing at version v, that listing's open rows with a version
<= v are moot: `indexed` when v is the row's own version, `stale` when its own version came
back 409 (the sink already held a newer one), `superseded` when v is newer. Rows whose
version could not be read (and rows without a listing id) are never resolved here; retry,
replay of a fixed value or purge closes them.

Resolution is best effort and off the hot path: `note()` only appends to a bounded buffer
and never waits; a background task writes batches with `backoff.retry` until stopped.
Most notes resolve nothing (a healthy pipeline has few open rows), so each batch first asks
which listings have open rows at all (at most `OPEN_PROBE_LIMIT`, from the open-rows index)
and sends only the notes for those: usually none, and then no `UPDATE` (which encodes an
array of every written listing and makes the database join them with the open rows). With
more open listings than that, the whole batch goes, as it is. While
the table is down the buffer fills; past its bound the oldest notes are dropped and counted
(`stream_indexer_dlq_resolutions_dropped_total`), and their rows simply stay open. Nothing
here touches offsets or commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from stream_indexer.backoff import Backoff, RetryPolicy, retry
from stream_indexer.dlq.table import DATABASE_ERRORS, DEFAULT_TABLE, quote_table_name
from stream_indexer.errors import RetryAbortedError
from stream_indexer.lifecycle import Lifecycle

log = logging.getLogger(__name__)

INDEXED = "indexed"
SUPERSEDED = "superseded"
STALE = "stale"
PURGED = "purged"
RESOLUTIONS = (INDEXED, SUPERSEDED, STALE, PURGED)

#: (listing id, version written, True when the write was a 409: the sink held a newer one)
Written = tuple[int, int, bool]

# Per open row, the note that closes it: its own version first (indexed or stale), else the
# newest version above it (superseded). The outer condition is checked again on the locked
# row, so a row a newer failure just replaced is left open.
_RESOLVE = """
UPDATE {table} AS d SET resolved_at = now(), resolution = r.resolution
FROM (
    SELECT DISTINCT ON (o.id) o.id, u.version,
           CASE WHEN u.version <> o.version THEN 'superseded'
                WHEN u.stale THEN 'stale' ELSE 'indexed' END AS resolution
    FROM {table} AS o
    JOIN unnest($1::bigint[], $2::bigint[], $3::boolean[]) AS u(listing_id, version, stale)
      ON o.listing_id = u.listing_id AND o.version <= u.version
    WHERE o.resolved_at IS NULL
    ORDER BY o.id, (u.version = o.version) DESC, u.stale, u.version DESC
) AS r
WHERE d.id = r.id AND d.resolved_at IS NULL AND d.version <= r.version
RETURNING d.resolution
"""


# The listings `_RESOLVE` could close a row of: open, with a listing id and a version.
_OPEN_LISTINGS = """
SELECT DISTINCT listing_id FROM {table}
WHERE resolved_at IS NULL AND listing_id IS NOT NULL AND version IS NOT NULL
LIMIT $1
"""

#: open listings up to which a batch is filtered before it is sent (beyond: sent whole)
OPEN_PROBE_LIMIT = 1_000


def resolve_sql(table: str = DEFAULT_TABLE) -> str:
    return _RESOLVE.format(table=quote_table_name(table))


def open_listings_sql(table: str = DEFAULT_TABLE) -> str:
    return _OPEN_LISTINGS.format(table=quote_table_name(table))


async def open_listings(
    conn: Any, sql: str, limit: int, command_timeout_s: float | None = 30.0
) -> set[int] | None:
    """The listings with an open row a note could close; None when there are more than
    `limit` (then filtering would cost more than it saves)."""
    rows = await conn.fetch(sql, limit + 1, timeout=command_timeout_s)
    if len(rows) > limit:
        return None
    return {int(row["listing_id"]) for row in rows}


async def resolve_written(
    conn: Any, sql: str, written: Sequence[Written], command_timeout_s: float | None = 30.0
) -> Counter[str]:
    """Resolve the open rows `written` makes moot (one statement); counts by resolution."""
    if not written:
        return Counter()
    rows = await conn.fetch(
        sql,
        [listing_id for listing_id, _v, _s in written],
        [version for _l, version, _s in written],
        [stale for _l, _v, stale in written],
        timeout=command_timeout_s,
    )
    return Counter(str(row["resolution"]) for row in rows)


def _database_error(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


class DeadLetterResolver(Lifecycle):
    """Buffers what the pipeline wrote and resolves rows from it in batches, in the background."""

    def __init__(
        self,
        pool: Any,
        table: str = DEFAULT_TABLE,
        *,
        backoff: Backoff | None = None,
        max_pending: int = 100_000,
        batch_size: int = 2_000,
        stop_timeout_s: float = 5.0,
        on_resolved: Callable[[str, int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        on_pending: Callable[[int], None] | None = None,
        probe_limit: int = OPEN_PROBE_LIMIT,
    ) -> None:
        self._pool = pool
        self._sql = resolve_sql(table)
        self._open_sql = open_listings_sql(table)
        self._probe_limit = probe_limit
        self._backoff = backoff or Backoff(0.5, 2.0, 30.0)
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._stop_timeout_s = stop_timeout_s
        self._on_resolved = on_resolved
        self._on_dropped = on_dropped
        self._on_pending = on_pending
        self._pending: deque[Written] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: notes dropped because the buffer was full (their rows stay open)
        self.dropped = 0
        #: rows this resolver closed, by resolution
        self.resolved: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def note(self, written: Iterable[Written]) -> None:
        """Queue listings written at a version; never blocks (drops the oldest when full)."""
        pending = self._pending
        before = len(pending)
        pending.extend(written)
        if len(pending) == before:
            return
        over = len(pending) - self._max_pending
        if over > 0:
            for _ in range(over):
                pending.popleft()
            self.dropped += over
            if self._on_dropped is not None:
                self._on_dropped(over)
        self._report_pending()
        self._idle.clear()
        self._wakeup.set()

    async def drained(self) -> None:
        """Wait until every note so far has been written (or dropped)."""
        await self._idle.wait()

    async def _start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dlq-resolver")

    async def _stop(self) -> None:
        """Write what is buffered within the stop deadline; what is left stays open."""
        self._stopping.set()
        self._wakeup.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self._stop_timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:  # logged by _run; stopping must not fail for it
            pass
        if self._pending:
            log.warning(
                "stopping with %d dead-letter resolutions unwritten; their rows stay open",
                len(self._pending),
            )

    async def _run(self) -> None:
        policy = RetryPolicy.until_stopped(self._backoff, self._stopping)
        while True:
            if not self._pending:
                self._idle.set()
                if self._stopping.is_set():
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            take = min(self._batch_size, len(self._pending))
            batch = [self._pending.popleft() for _ in range(take)]
            try:
                resolved = await retry(
                    partial(self._resolve, batch),
                    policy,
                    retriable=_database_error,
                    on_retry=self._table_down,
                )
            except RetryAbortedError:
                self._pending.extendleft(reversed(batch))
                return
            except Exception:
                # A bug, not an outage: lose this batch (its rows stay open), keep going.
                log.exception("resolving dead letters failed; %d notes dropped", len(batch))
                self.dropped += len(batch)
                if self._on_dropped is not None:
                    self._on_dropped(len(batch))
                resolved = Counter()
            self.resolved.update(resolved)
            if self._on_resolved is not None:
                for resolution, count in resolved.items():
                    self._on_resolved(resolution, count)
            self._report_pending()

    async def _resolve(self, batch: list[Written]) -> Counter[str]:
        """Resolve what `batch` makes moot, sending only the notes of listings that have an
        open row right now (all of them when there are too many such listings to list)."""
        listings = await open_listings(self._pool, self._open_sql, self._probe_limit)
        if listings is not None:
            batch = [note for note in batch if note[0] in listings]
        return await resolve_written(self._pool, self._sql, batch)

    def _table_down(self, attempt: int, exc: BaseException, _delay: float) -> None:
        log.warning(
            "DLQ table unavailable for resolutions (attempt %d, %d waiting): %s",
            attempt,
            len(self._pending),
            exc,
        )

    def _report_pending(self) -> None:
        if self._on_pending is not None:
            self._on_pending(len(self._pending))


__all__ = [
    "INDEXED",
    "OPEN_PROBE_LIMIT",
    "PURGED",
    "RESOLUTIONS",
    "STALE",
    "SUPERSEDED",
    "DeadLetterResolver",
    "Written",
    "open_listings",
    "open_listings_sql",
    "resolve_sql",
    "resolve_written",
]
