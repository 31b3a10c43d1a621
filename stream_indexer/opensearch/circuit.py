"""Circuit breaker: when the sink is down, stop sending and stop fetching, then probe.

Whole bulk requests failing transiently (connection refused, timeouts, 429/5xx) several times
in a row open the circuit: workers stop sending, the service pauses every assigned
partition, and a probe asks the cluster on a backoff whether it answers again. When it does,
the circuit goes half-open and the workers' held batches are tried; the first success closes
it, a failure opens it again. Nothing is ever dead-lettered because the sink is down.

Each probe has its own short timeout: a blackholed sink (connections accepted, never
answered) would otherwise hold a probe for the whole request timeout, and recovery would
follow that timeout instead of the sink. When a probe answers, requests sent before it
that are still unanswered are stuck on dead connections: `on_recovered(probe_started)`
lets their owner give up on them, so they are re-sent at once instead of timing out.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Gauge

from stream_indexer.backoff import Backoff, RetryPolicy, retry
from stream_indexer.errors import SinkUnavailableError
from stream_indexer.lifecycle import Lifecycle

log = logging.getLogger(__name__)


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker(Lifecycle):
    """Shared by all partition workers of a process."""

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        probe: Callable[[], Awaitable[bool]],
        probe_backoff: Backoff,
        probe_timeout_s: float = 2.0,
        on_recovered: Callable[[float], object] | None = None,
        gauge: Gauge | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self._probe = probe
        self._probe_backoff = probe_backoff
        self.probe_timeout_s = probe_timeout_s
        self._on_recovered = on_recovered
        self._gauge = gauge
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.opened_total = 0
        self._passable = asyncio.Event()
        self._passable.set()
        self._probe_task: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self.state is CircuitState.OPEN

    def record_success(self) -> None:
        self.consecutive_failures = 0
        if self.state is not CircuitState.CLOSED:
            log.info("sink answers again: circuit closed")
            self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.state is CircuitState.HALF_OPEN or (
            self.state is CircuitState.CLOSED
            and self.consecutive_failures >= self.failure_threshold
        ):
            self._open()

    async def wait_passable(self) -> None:
        """Return at once unless the circuit is open; then wait for the probe to succeed."""
        if not self._passable.is_set():
            await self._passable.wait()

    async def _stop(self) -> None:
        """Cancel the probe and let every waiting worker through (they are stopping too)."""
        task, self._probe_task = self._probe_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._passable.set()

    def _open(self) -> None:
        log.warning(
            "sink unavailable after %d consecutive failures: circuit open, partitions paused",
            self.consecutive_failures,
        )
        self.opened_total += 1
        self._set(CircuitState.OPEN)
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.create_task(self._probe_until_answer(), name="circuit-probe")

    async def _probe_until_answer(self) -> None:
        """Probe on the probe backoff until the sink answers. The first probe waits a delay
        too: the requests that opened the circuit have only just failed."""
        await asyncio.sleep(self._probe_backoff.delay(1))
        await retry(self._probe_or_raise, RetryPolicy.forever(self._probe_backoff))

    async def _probe_or_raise(self) -> None:
        if self.state is not CircuitState.OPEN:
            return  # closed meanwhile: a held batch went through
        started = time.monotonic()
        if not await self._probe_once():
            raise SinkUnavailableError("sink probe unanswered")
        log.info("sink probe answered: circuit half-open")
        self._set(CircuitState.HALF_OPEN)
        if self._on_recovered is not None:
            self._on_recovered(started)

    async def _probe_once(self) -> bool:
        """One probe, bounded by `probe_timeout_s`; any error counts as no answer."""
        try:
            return await asyncio.wait_for(self._probe(), self.probe_timeout_s)
        except Exception as exc:
            log.debug("sink probe failed: %r", exc)
            return False

    def _set(self, state: CircuitState) -> None:
        self.state = state
        if state is CircuitState.OPEN:
            self._passable.clear()
        else:
            self._passable.set()
        if self._gauge is not None:
            self._gauge.set(int(state))
