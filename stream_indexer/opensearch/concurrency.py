"""Bulk request shaping: how many `_bulk` requests may be in flight, learned from the sink.

Additive increase, multiplicative decrease on observed latency, after Vector's adaptive
request concurrency (itself after TCP congestion control). Responses are gathered over
adjustment periods of about one round trip (an EWMA of the requests' durations); at the end
of each period:

- back pressure seen (a request failed as a whole, or items answered 429 / 5xx): the limit
  is multiplied by `decrease_ratio`, and the baseline is left alone;
- the period's mean latency is above the baseline (an EWMA of past periods' means) by more
  than `deviation_scale` times its EWMA deviation: the cluster is queueing, decrease;
- the limit was reached during the period and latency is no worse than the baseline: one
  more request may be in flight.

Latency is measured per document, not per request: group commit makes request sizes vary,
and a request twice as large is expected to take about twice as long without meaning the
cluster is busier. The controller is pure logic (clock passed in), unit-tested on its own;
`opensearch/assembler.py` feeds it and obeys `limit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Vector's defaults, chosen there by simulation against services with various responses
DECREASE_RATIO = 0.9
EWMA_ALPHA = 0.4
DEVIATION_SCALE = 2.5
#: latency within this fraction of the baseline is never "rising", however steady the past
#: periods were (a zero deviation would otherwise make any jitter a decrease)
MIN_TOLERANCE = 0.05
#: shortest adjustment period: a very fast sink must not move the limit on every response
MIN_PERIOD_S = 0.05


@dataclass(slots=True)
class _Period:
    started: float
    seconds_per_doc: float = 0.0
    responses: int = 0
    back_pressure: bool = False
    reached_limit: bool = False


class ConcurrencyController:
    """The in-flight limit for `_bulk` requests, between `min_limit` and `max_limit`."""

    def __init__(
        self,
        *,
        min_limit: int,
        max_limit: int,
        initial: int | None = None,
        decrease_ratio: float = DECREASE_RATIO,
        ewma_alpha: float = EWMA_ALPHA,
        deviation_scale: float = DEVIATION_SCALE,
        now: float = 0.0,
    ) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"bounds must satisfy 1 <= min ({min_limit}) <= max ({max_limit})")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self._limit = float(min(max_limit, max(min_limit, initial or min_limit)))
        self._ratio = decrease_ratio
        self._alpha = ewma_alpha
        self._scale = deviation_scale
        #: EWMA of the periods' mean seconds per document, and of its squared deviation
        self.baseline: float | None = None
        self._variance = 0.0
        #: EWMA of whole requests' round trips: one adjustment period lasts about one
        self._rtt = 0.0
        self._period = _Period(now)
        self.increases = 0
        self.decreases = 0

    @property
    def limit(self) -> int:
        """Requests that may be in flight now (always within the bounds)."""
        return int(self._limit)

    def sent(self, in_flight: int) -> None:
        """A request went out; `in_flight` counts it. Reaching the limit is what allows an
        increase: a limit that is never used says nothing about the sink."""
        if in_flight >= self.limit:
            self._period.reached_limit = True

    def answered(self, seconds: float, docs: int, now: float, *, back_pressure: bool) -> None:
        """A request was answered after `seconds`; `back_pressure`: some items were refused
        for load (429, 5xx, rejected execution)."""
        period = self._period
        period.responses += 1
        period.seconds_per_doc += seconds / max(1, docs)
        self._rtt = seconds if not self._rtt else self._rtt + self._alpha * (seconds - self._rtt)
        period.back_pressure |= back_pressure
        self._maybe_adjust(now)

    def failed(self, now: float) -> None:
        """A request failed as a whole (unreachable, timeout, 429 / 5xx on the request)."""
        self._period.back_pressure = True
        self._maybe_adjust(now)

    def _maybe_adjust(self, now: float) -> None:
        period = self._period
        if now - period.started < max(MIN_PERIOD_S, self._rtt) and not period.back_pressure:
            return
        if period.back_pressure:
            self._decrease()
        elif period.responses:
            mean = period.seconds_per_doc / period.responses
            if self.baseline is None:
                self.baseline = mean
            else:
                spread = max(self._scale * math.sqrt(self._variance), MIN_TOLERANCE * self.baseline)
                threshold = self.baseline + spread
                if mean > threshold:
                    self._decrease()
                elif period.reached_limit and mean <= self.baseline:
                    self._increase()
                self._observe(mean)
        self._period = _Period(now)

    def _observe(self, mean: float) -> None:
        assert self.baseline is not None
        difference = mean - self.baseline
        self.baseline += self._alpha * difference
        self._variance = (1 - self._alpha) * (self._variance + self._alpha * difference**2)

    def _increase(self) -> None:
        if self._limit < self.max_limit:
            self._limit = min(float(self.max_limit), math.floor(self._limit) + 1.0)
            self.increases += 1

    def _decrease(self) -> None:
        lowered = max(float(self.min_limit), self._limit * self._ratio)
        # never stall at the same integer: a limit of 2 x 0.9 must still reach 1
        if int(lowered) == int(self._limit) and self._limit > self.min_limit:
            lowered = max(float(self.min_limit), math.floor(self._limit) - 1.0)
        if lowered < self._limit:
            self._limit = lowered
            self.decreases += 1


__all__ = ["ConcurrencyController"]
