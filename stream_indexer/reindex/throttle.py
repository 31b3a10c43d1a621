"""Reindex, throttle: live traffic first. A token bucket caps the backfill's documents per
second (`--max-rate`), and an AIMD controller sizes its pages from what the cluster and the
live consumer group say: each page that went well grows the next one by a step (additive
increase); a page that met overload (429 / rejected execution, retried by the bulk writer),
a bulk much slower than the best seen, a live group whose lag grew since the last probe, or
a page that had to wait for the live group or ended with it behind halves it
(multiplicative decrease). A live gate holds the backfill altogether while the live group
is more than a few seconds of its own traffic behind and still making progress: smaller
pages alone do not give a sink that never answers 429 back to live indexing, and after a
hold the pages start small, so that a request already in flight when the live group falls
behind again (it cannot be recalled) is a short one. Pure logic: the clock and sleep are
injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; rate 0 means no limit."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_time(self, n: int) -> float:
        """Seconds until `n` tokens can be taken (0 when they can be now)."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate)

    async def take(self, n: int) -> None:
        """Take `n` tokens, sleeping until they are there. A page larger than the burst
        goes into debt instead of waiting forever: the next page pays for it."""
        if self.rate <= 0:
            return
        self._refill()
        wait = max(0.0, (min(n, self.burst) - self._tokens) / self.rate)
        if wait > 0:
            await self._sleep(wait)
            self._refill()
        self._tokens -= n


@dataclass(slots=True)
class PageSignal:
    """What one page of the backfill saw."""

    #: seconds its bulk took (all rounds, retries included)
    latency_s: float
    #: items or requests answered with overload (429, 5xx, rejected execution)
    overloaded: int = 0
    #: the live group's total lag at the latest probe, None when not probed
    live_lag: int | None = None
    #: the page waited for the live group, or the live group was behind when it ended
    live_behind: bool = False


class Aimd:
    """The backfill's page size: +`step` after a good page, halved after a bad one."""

    def __init__(
        self,
        *,
        maximum: int,
        minimum: int,
        latency_factor: float = 3.0,
        lag_growth: int = 1_000,
        step: int | None = None,
    ) -> None:
        if minimum > maximum:
            minimum = maximum
        self.maximum = maximum
        self.minimum = minimum
        self.latency_factor = latency_factor
        self.lag_growth = lag_growth
        self.step = step if step is not None else max(1, maximum // 10)
        self.size = maximum
        #: doubling after each good page until the first decrease (see `slow_start`)
        self.slow = False
        #: the best latency per document seen: "rising latency" is measured against it
        self._best_per_doc: float | None = None
        self._last_lag: int | None = None
        self.decreases = 0
        self.reason = ""

    def observe(self, signal: PageSignal, docs: int) -> int:
        """Feed one page's outcome; return the next page size."""
        reason = ""
        if signal.overloaded:
            reason = "overload"
        per_doc = signal.latency_s / max(docs, 1)
        if self._best_per_doc is None or per_doc < self._best_per_doc:
            self._best_per_doc = per_doc
        elif not reason and per_doc > self._best_per_doc * self.latency_factor:
            reason = "latency"
        if signal.live_behind and not reason:
            reason = "live_behind"
        if signal.live_lag is not None:
            if (
                not reason
                and self._last_lag is not None
                and signal.live_lag - self._last_lag >= self.lag_growth
            ):
                reason = "live_lag"
            self._last_lag = signal.live_lag
        if reason:
            self.size = max(self.minimum, self.size // 2)
            self.decreases += 1
            self.slow = False
        elif self.slow:
            self.size = min(self.maximum, self.size * 2)
            self.slow = self.size < self.maximum
        else:
            self.size = min(self.maximum, self.size + self.step)
        self.reason = reason
        return self.size

    def slow_start(self, divisor: int = 8) -> None:
        """Begin at 1/`divisor` of the maximum and double after each good page (as TCP's
        slow start): with live traffic on the cluster, the first pages find out how it
        copes before full-size requests are in flight, which cannot be recalled."""
        self.size = max(self.minimum, self.maximum // divisor)
        self.slow = self.size < self.maximum


@dataclass(slots=True)
class LiveProbe:
    """One reading of the live group: records produced and committed (sums over
    partitions), its lag, and when it was read."""

    produced: int
    committed: int
    lag: int
    at: float


class LiveGate:
    """Live traffic first: hold the backfill while the live group is behind.

    "Behind" is measured in seconds of the live topic's own traffic (lag / produce rate), so
    one threshold fits a quiet topic and a busy one; the commit interval and a bulk in
    flight are part of every lag, so the threshold sits above them. The gate holds only
    while the live group is committing (it is working through its lag and the backfill's
    requests are in its way): it committed something within the last `stall_s`. A live
    group stuck for a few seconds behind a backfill request is still one to wait for; one
    that has committed nothing for longer (its pods are down) is not helped by waiting, and
    the backfill goes on. Holds add up to at most `hold_share` of the gate's life (see
    `allowance`). `max_lag_s` 0 turns the gate off. `on_hold(stage, seconds)` is told of each
    hold once it ends (the hold metrics).
    """

    def __init__(
        self,
        max_lag_s: float,
        *,
        stall_s: float = 10.0,
        hold_share: float = 0.5,
        smoothing: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        on_hold: Callable[[str, float], None] = lambda _stage, _seconds: None,
    ) -> None:
        self.max_lag_s = max_lag_s
        self.on_hold = on_hold
        self.stall_s = stall_s
        self.hold_share = hold_share
        self.smoothing = smoothing
        self._clock = clock
        self._since = clock()
        #: seconds spent holding so far
        self.held_s = 0.0
        self._last: LiveProbe | None = None
        self._rate: float | None = None
        #: when the live group's commits last moved (probe time), None: not seen yet
        self._progress_at: float | None = None
        self._progressing = False
        self.behind_s: float = 0.0
        #: set once two readings gave the live topic's produce rate
        self.rated = asyncio.Event()
        #: set whenever the gate does not hold: the backfill waits on it
        self.open = asyncio.Event()
        self.open.set()

    def observe(self, probe: LiveProbe) -> None:
        self._update(probe)
        if self.hold:
            self.open.clear()
        else:
            self.open.set()

    def _update(self, probe: LiveProbe) -> None:
        last, self._last = self._last, probe
        if last is None or probe.at <= last.at:
            self.behind_s = 0.0
            return
        rate = max(0, probe.produced - last.produced) / (probe.at - last.at)
        self._rate = (
            rate
            if self._rate is None
            else (self.smoothing * rate + (1 - self.smoothing) * self._rate)
        )
        self.rated.set()
        if probe.committed > last.committed:
            self._progress_at = probe.at
        self._progressing = (
            self._progress_at is not None and probe.at - self._progress_at <= self.stall_s
        )
        if probe.lag <= 0:
            self.behind_s = 0.0
        elif self._rate > 0:
            self.behind_s = probe.lag / self._rate
        else:
            self.behind_s = float("inf")  # a backlog with no new traffic: all of it is behind

    @property
    def live_traffic(self) -> bool:
        """The live topic is being written to (known after two readings)."""
        return self._rate is not None and self._rate > 0

    @property
    def behind(self) -> bool:
        """The live group is more than `max_lag_s` of its traffic behind (gate on)."""
        return self.max_lag_s > 0 and self.behind_s > self.max_lag_s

    @property
    def hold(self) -> bool:
        """True while the backfill should wait for the live group."""
        return self.behind and self._progressing

    def allowance(self) -> float:
        """Seconds the gate may still hold: its holds add up to at most `hold_share` of the
        time since it was made, so the rebuild always gets the rest (a live group that is
        behind for good, on a cluster too small for its traffic, must not stop it: the
        catch-up has to outpace the live stream to finish at all)."""
        return self.hold_share * (self._clock() - self._since) - self.held_s

    async def wait(self, max_s: float, stage: str = "backfill") -> bool:
        """Wait while the gate holds, at most `max_s` and the allowance; True when it held.
        `stage` (who waited: "backfill" or "catchup") goes to `on_hold`."""
        if not self.hold:
            return False
        limit = min(max_s, self.allowance())
        if limit <= 0:
            return False
        started = self._clock()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.open.wait(), limit)
        finally:  # a hold cut short by a stop is still a hold
            held = self._clock() - started
            self.held_s += held
            self.on_hold(stage, held)
        return True


__all__ = ["Aimd", "LiveGate", "LiveProbe", "PageSignal", "TokenBucket"]
