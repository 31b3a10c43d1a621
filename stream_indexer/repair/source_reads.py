"""Drift check, the source side: each read of the source table retried while the database is away.

A full check of a large table runs for a long time, and a source database that restarts,
fails over or drops the session (`pg_terminate_backend`) in the middle must not throw the
scan away. Each read goes through `backoff.retry` for at most `VERIFY__SOURCE_RETRY_S`, and
a page is asked for again after the same id, so the scan resumes after the last row it
compared instead of starting over. A query the source refuses (a missing table or column, no
permission) fails at once; a source still away when the time is up fails the run with one
line naming the setting (exit 1, as any store that cannot be reached).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from stream_indexer.backoff import RetryPolicy, retry
from stream_indexer.errors import SourceUnavailableError
from stream_indexer.masking import mask_text
from stream_indexer.pipeline.source_pool import source_down
from stream_indexer.pipeline.source_scan import SourceRow, SourceScanner

T = TypeVar("T")
log = logging.getLogger("stream_indexer.verify")


class SourceReads:
    """The reads a verify makes of `scanner` (started and stopped by the caller), retried."""

    def __init__(self, scanner: SourceScanner, policy: RetryPolicy) -> None:
        self._scanner = scanner
        self._policy = policy
        #: reads that failed because the source was away and were tried again
        self.retries = 0

    async def page(self, after_id: int, limit: int) -> list[SourceRow]:
        return await self._read(
            f"source rows after id {after_id}", lambda: self._scanner.page(after_id, limit)
        )

    async def rows(self, listing_ids: Sequence[int]) -> dict[int, SourceRow]:
        return await self._read(
            f"{len(listing_ids)} source rows by id", lambda: self._scanner.rows(listing_ids)
        )

    async def sample(self, percent: float, limit: int) -> list[SourceRow]:
        return await self._read(
            "a sample of source rows", lambda: self._scanner.sample(percent, limit)
        )

    async def count(self) -> int:
        return await self._read("the source row count", self._scanner.count)

    async def _read(self, what: str, read: Callable[[], Awaitable[T]]) -> T:
        def on_retry(attempt: int, error: BaseException, delay_s: float) -> None:
            self.retries += 1
            log.warning(
                "source database away while reading %s (attempt %d): %s; retrying in %.1f s",
                what,
                attempt,
                mask_text(str(error)),
                delay_s,
                extra={"attempt": attempt, "retry_in_s": round(delay_s, 2)},
            )

        try:
            return await retry(read, self._policy, retriable=source_down, on_retry=on_retry)
        except SourceUnavailableError as exc:
            if not source_down(exc):
                raise
            seconds = self._policy.max_elapsed_s
            raise SourceUnavailableError(
                f"the source database stayed away for VERIFY__SOURCE_RETRY_S ({seconds:g} s) "
                f"while reading {what}: {exc}"
            ) from exc


__all__ = ["SourceReads"]
