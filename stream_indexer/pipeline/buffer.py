"""Per-partition processing, step one: the bounded buffer between the fetch loop and a worker.

Records wait here in offset order until the worker takes a batch by count, bytes and linger.
The buffer never blocks the fetch loop: it reports `full` at 3/4 of either bound (the
partition is paused there) and `drained_enough` at 1/2 (it may resume), and `room` lets the
fetch loop ask for no more records than fit, which keeps the record bound exact.

Linger is for light traffic only: a full buffer (a backlog: its partition is paused, so
nothing more arrives until the worker takes a batch) goes out at once, however far the
batch is from `max_records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from prometheus_client import Gauge

from stream_indexer.settings import BatchSettings

#: a buffered record, its size in bytes (key + value) and when it was fetched (monotonic)
Buffered = tuple[Any, int, float]


class PartitionBuffer:
    """One partition's records waiting for their batch; `queue_size` counts them."""

    def __init__(self, batch: BatchSettings, queue_size: Gauge) -> None:
        self._max_records = batch.max_records
        self._max_bytes = batch.max_bytes
        self._linger_s = batch.linger_ms / 1000
        self._bound_records = batch.buffer_max_records
        self._bound_bytes = batch.buffer_max_bytes
        self._queue_size = queue_size
        self._records: deque[Buffered] = deque()
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self._closing = False

    def submit(self, records: Sequence[Any]) -> None:
        """Queue fetched records (offset order); never blocks: the caller pauses on `full`."""
        now = time.monotonic()
        added = 0
        for record in records:
            size = len(record.value or b"") + len(record.key or b"")
            self._records.append((record, size, now))
            added += size
        self._bytes += added
        self._queue_size.inc(len(records))
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._records)

    @property
    def room(self) -> int:
        """Records the buffer can still take without going over `buffer_max_records`."""
        return max(0, self._bound_records - len(self._records))

    @property
    def full(self) -> bool:
        """Three quarters of either bound: the partition pauses here, so that while it is
        fetching it always has room for a quarter buffer (the fetch loop never asks for
        more records than the smallest room, which keeps the record bound exact)."""
        records, limit = len(self._records), self._bound_records
        return records >= limit - limit // 4 or self._bytes >= self._bound_bytes - (
            self._bound_bytes // 4
        )

    @property
    def drained_enough(self) -> bool:
        """Down to half of both bounds: a paused partition may resume."""
        return (
            len(self._records) <= self._bound_records // 2 and self._bytes <= self._bound_bytes // 2
        )

    def close(self) -> None:
        """No more records will come: `take_batch` returns what is left, then None."""
        self._closing = True
        self._wakeup.set()

    def drop(self) -> None:
        """Forget what is buffered (abandoned: never completed, so re-delivered later)."""
        if self._records:
            self._queue_size.dec(len(self._records))
            self._records.clear()
            self._bytes = 0

    async def has_records(self) -> bool:
        """Wait for a record; False once closed and empty (no batch will come)."""
        while not self._records:
            if self._closing:
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
        return True

    async def take_batch(self) -> list[Buffered] | None:
        """The next batch: up to `max_records` / `max_bytes`, after at most `linger_ms` for a
        partial one to fill; None once closed and empty."""
        if not await self.has_records():
            return None
        if self._linger_s > 0 and not self._closing and not self._batch_ready():
            deadline = time.monotonic() + self._linger_s
            while not self._batch_ready() and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
        batch: list[Buffered] = []
        size = 0
        records = self._records
        while records and len(batch) < self._max_records:
            item = records[0]
            if batch and size + item[1] > self._max_bytes:
                break
            records.popleft()
            batch.append(item)
            size += item[1]
        self._bytes -= size
        return batch

    def _batch_ready(self) -> bool:
        """A full batch, or a full buffer: waiting longer could not add a record."""
        return (
            len(self._records) >= self._max_records or self._bytes >= self._max_bytes or self.full
        )


__all__ = ["Buffered", "PartitionBuffer"]
