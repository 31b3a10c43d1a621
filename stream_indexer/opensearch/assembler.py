"""Bulk assembly: partitions' batches that are ready together go out in one `_bulk` request.

Group commit, as databases do for log flushes: while a request is in flight, the batches
other partitions finish preparing queue up, and the next free request slot takes all of
them (up to a document and byte limit) in one request. Fewer, larger requests are what
OpenSearch indexes fastest, and a partition never waits for another to fill a batch: a
lone batch is sent at once when a slot is free. Results are split back per submission,
item by item, so each partition's retry and commit logic stays its own.

A request also waits for the batches already on their way: a worker `announce()`s a batch
when it starts lingering over or preparing it (decoding, hydrating), its first one as soon
as its partition is assigned (a backlog is on its way), and `withdraw()`s the announcement
when the batch is queued (or needs no request). A free slot takes the queue once every
batch announced before it looked is queued, or after `GATHER_MAX_S` (a batch that outlives
that wait is not waited for again). Under a backlog that turns the partitions' batches,
which finish decoding one after another, into one request instead of a small one and a
trailing one; under light traffic it waits at most one linger. Only batches announced
before the wait began are awaited, so a steady trickle of new ones never holds a request.

How many requests may be in flight is `max_in_flight`, or, with a `ConcurrencyController`
(`OPENSEARCH__ADAPTIVE_CONCURRENCY`), the limit it learns from each request's latency and
back pressure, within 1..`max_in_flight`.

After an outage, requests sent before a probe that has since answered are stuck on dead
connections (a blackholed sink): `abandon_stuck` fails them as sink-unavailable so their
writes are re-sent now, instead of holding their slots until the request timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stream_indexer.errors import SinkRequestAbandonedError
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.bulk import (
    ItemResult,
    PendingWrite,
    build_body,
    parse_items,
)
from stream_indexer.opensearch.concurrency import ConcurrencyController
from stream_indexer.opensearch.sink import OpenSearchSink

#: the longest a request waits for announced batches (a hydration stalled on a source
#: database that is down must not hold the batches that are ready)
GATHER_MAX_S = 1.0


@dataclass(slots=True)
class _Submission:
    body: bytes
    count: int
    future: asyncio.Future[list[ItemResult]]


class BulkAssembler(Lifecycle):
    """Owns the bulk request slots of a process; `send()` is what workers call."""

    def __init__(
        self,
        sink: OpenSearchSink,
        metrics: Metrics,
        *,
        max_in_flight: int,
        max_docs: int,
        max_bytes: int,
        controller: ConcurrencyController | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`gate`, when given, is awaited before each request goes out (a reindex's
        catch-up waits there while the live group is behind); batches that arrive
        meanwhile join the request, up to the limits."""
        self._sink = sink
        self._gate = gate
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._controller = controller
        #: requests sent and not yet answered (their slots are taken)
        self._in_flight = 0
        self._max_docs = max_docs
        self._max_bytes = max_bytes
        self._queue: deque[_Submission] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: requests in flight: when each was sent and the submissions it carries
        self._requests: dict[asyncio.Task[None], tuple[float, list[_Submission]]] = {}
        #: batches announced and not yet queued: announcement number -> None (in order)
        self._announced: dict[int, None] = {}
        self._announcements = 0
        #: announcements up to this number outlived a wait: no request waits for them again
        self._overdue = 0
        metrics.bulk_concurrency_limit.set(self.limit)

    @property
    def limit(self) -> int:
        """Requests that may be in flight now."""
        return self._controller.limit if self._controller is not None else self._max_in_flight

    def announce(self) -> int:
        """A batch is on its way (lingering, decoding, hydrating); returns its number for
        `withdraw`. Requests about to go out wait for it (see the module doc)."""
        self._announcements += 1
        self._announced[self._announcements] = None
        return self._announcements

    def withdraw(self, number: int) -> None:
        """The announced batch is queued, or needs no request; idempotent."""
        if number in self._announced:
            del self._announced[number]
            self._wake.set()

    async def _start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bulk-assembler")

    async def send(self, writes: list[PendingWrite]) -> list[ItemResult]:
        """One result per write, in order; raises SinkUnavailableError if the request failed."""
        if not self.running:
            raise RuntimeError("BulkAssembler.send() before start() or after stop()")
        future: asyncio.Future[list[ItemResult]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(build_body(writes), len(writes), future))
        self._wake.set()
        return await future

    async def _stop(self) -> None:
        """Cancel the loop and requests in flight (their writes are re-sent by whoever
        owns the records next: nothing was committed for them)."""
        tasks = [t for t in (self._task, *self._requests) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for submission in self._queue:
            if not submission.future.done():
                submission.future.cancel()
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            while not (self._in_flight < self.limit and self._ready_to_send()):
                self._wake.clear()
                await self._wake.wait()
            if self._gate is not None:
                await self._gate()
            # one turn of the event loop: workers that are ready right now reach send()
            # and join this request instead of trailing it in the next one
            await asyncio.sleep(0)
            await self._gather()
            group = self._take_group()
            if not group:
                continue
            self._in_flight += 1
            if self._controller is not None:
                self._controller.sent(self._in_flight)
            request = asyncio.create_task(self._flush(group))
            self._requests[request] = (time.monotonic(), group)
            request.add_done_callback(self._request_done)

    def _request_done(self, request: asyncio.Task[None]) -> None:
        # here, not in `_flush`: a request cancelled before it ran never reaches its finally
        self._in_flight -= 1
        self._requests.pop(request, None)
        self._wake.set()

    def abandon_stuck(self, sent_before: float) -> int:
        """Fail and cancel the requests sent before `sent_before` (monotonic) that are still
        unanswered; their writers retry at once. Returns how many were abandoned."""
        stuck = [task for task, (sent, _) in self._requests.items() if sent < sent_before]
        for task in stuck:
            _, group = self._requests[task]
            error = SinkRequestAbandonedError("bulk request stuck while the sink was down")
            for submission in group:
                if not submission.future.done():
                    submission.future.set_exception(error)
            task.cancel()
        return len(stuck)

    async def _gather(self) -> None:
        """Wait (at most `GATHER_MAX_S`) for the batches announced until now to be queued,
        unless the queue already fills a request."""
        last = self._announcements
        deadline = time.monotonic() + GATHER_MAX_S
        while any(self._overdue < n <= last for n in self._announced):
            if sum(s.count for s in self._queue) >= self._max_docs:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # a batch this late is stuck (its source is down): later requests do not
                # wait for it again
                self._overdue = last
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _ready_to_send(self) -> bool:
        """Send when idle; add a concurrent request only for a half-full request's worth.

        While a request is in flight, small batches wait for it (or for more batches), so a
        slow cluster gets few large requests instead of many small concurrent ones; a
        backlog big enough still uses every slot.
        """
        if not self._queue:
            return False
        if not self._requests:
            return True
        return sum(s.count for s in self._queue) >= self._max_docs // 2

    def _take_group(self) -> list[_Submission]:
        group: list[_Submission] = []
        docs = size = 0
        while self._queue:
            submission = self._queue[0]
            if submission.future.done():  # its worker gave up waiting (stop deadline)
                self._queue.popleft()
                continue
            if group and (
                docs + submission.count > self._max_docs
                or size + len(submission.body) > self._max_bytes
            ):
                break
            self._queue.popleft()
            group.append(submission)
            docs += submission.count
            size += len(submission.body)
        return group

    async def _flush(self, group: list[_Submission]) -> None:
        metrics = self._metrics
        count = sum(s.count for s in group)
        metrics.bulk_in_flight.inc()
        began = time.perf_counter()
        try:
            body = group[0].body if len(group) == 1 else b"".join(s.body for s in group)
            response = await self._sink.bulk(body, count)
        except Exception as exc:
            self._adapt(None, count, None)
            for submission in group:
                if not submission.future.done():
                    submission.future.set_exception(exc)
            return
        finally:
            metrics.bulk_in_flight.dec()
        seconds = time.perf_counter() - began
        metrics.bulk_duration.observe(seconds)
        metrics.bulk_size.observe(count)
        results = parse_items(response, count)
        self._adapt(seconds, count, response)
        start = 0
        for submission in group:
            if not submission.future.done():
                submission.future.set_result(results[start : start + submission.count])
            start += submission.count

    def _adapt(self, seconds: float | None, count: int, response: dict[str, Any] | None) -> None:
        """Tell the controller how the request went (None: it failed as a whole)."""
        controller = self._controller
        if controller is None:
            return
        now = time.monotonic()
        if seconds is None or response is None:
            controller.failed(now)
        else:
            # only an answer with `errors: true` can carry items refused for load
            back_pressure = bool(response.get("errors")) and _overloaded(response)
            controller.answered(seconds, count, now, back_pressure=back_pressure)
        self._metrics.bulk_concurrency_limit.set(controller.limit)


def _overloaded(response: dict[str, Any]) -> bool:
    """Some item was refused for load (429, 5xx): what makes a request back pressure."""
    for item in response.get("items") or ():
        body = next(iter(item.values()), None) if isinstance(item, dict) else None
        status = body.get("status") if isinstance(body, dict) else None
        if type(status) is int and (status == 429 or status >= 500):
            return True
    return False
