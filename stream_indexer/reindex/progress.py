"""Reindex, progress: a bar on a terminal, a structured log line every few seconds otherwise.

Both show the phase, rows done of the total, the backfill rate and its ETA, and the catch-up
group's lag; the same figures go to the `stream_indexer_reindex_*` gauges.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from stream_indexer.observability.reindex_metrics import ReindexMetrics

log = logging.getLogger(__name__)
WIDTH = 30
MIN_REDRAW_S = 0.2


def eta_seconds(done: int, total: int, rate: float) -> float | None:
    """Seconds left at `rate` docs/s; None when unknown."""
    if rate <= 0 or total <= 0:
        return None
    return max(0.0, (total - done) / rate)


def render(phase: str, done: int, total: int, rate: float, lag: int | None) -> str:
    fraction = 1.0 if total <= 0 else min(1.0, done / total)
    filled = int(fraction * WIDTH)
    eta = eta_seconds(done, total, rate)
    parts = [
        f"reindex {phase:<8} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total}",
        f"{rate:,.0f} docs/s",
        f"ETA {_duration(eta)}" if phase == "backfill" else "",
        f"lag {lag}" if lag is not None else "",
    ]
    return "  ".join(part for part in parts if part)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Reporter:
    """Progress of one reindex process (metrics, bar or log lines)."""

    def __init__(
        self,
        metrics: ReindexMetrics,
        *,
        interval_s: float,
        stream: TextIO | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self._stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._interval = interval_s
        self._clock = clock
        self.phase = ""
        self.done = 0
        self.total = 0
        self.lag: int | None = None
        self._rate_from: tuple[float, int] | None = None
        self._shown_at = -1e9
        self.rate = 0.0

    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.metrics.set_phase(phase)
            self._show(force=True)

    def restart_rate(self, done: int) -> None:
        """Measure the rate from now on (the backfill's pages, not the set-up before)."""
        self._rate_from = (self._clock(), done)
        self.rate = 0.0

    def rows(self, done: int, total: int) -> None:
        now = self._clock()
        if self._rate_from is None:
            self._rate_from = (now, done)
        since, start_done = self._rate_from
        if now > since:
            self.rate = (done - start_done) / (now - since)
        self.done, self.total = done, max(total, done)
        self.metrics.rows_done.set(done)
        self.metrics.rows_total.set(self.total)
        self.metrics.docs_per_second.set(self.rate)
        self._show()

    def lags(self, caught: int, live: int) -> None:
        self.lag = caught
        self.metrics.catchup_lag.set(caught)
        self.metrics.live_lag.set(live)
        self._show()

    def close(self) -> None:
        if self.tty:
            self._show(force=True)
            self._stream.write("\n")
            self._stream.flush()

    def _show(self, *, force: bool = False) -> None:
        if not self.phase:
            return
        now = self._clock()
        if self.tty:
            if force or now - self._shown_at >= MIN_REDRAW_S:
                self._shown_at = now
                line = render(self.phase, self.done, self.total, self.rate, self.lag)
                self._stream.write("\r" + line)
                self._stream.flush()
            return
        if force or now - self._shown_at >= self._interval:
            self._shown_at = now
            eta = eta_seconds(self.done, self.total, self.rate)
            log.info(
                "reindex progress",
                extra={
                    "phase": self.phase,
                    "rows_done": self.done,
                    "rows_total": self.total,
                    "docs_per_s": round(self.rate, 1),
                    "eta_s": None if eta is None else round(eta),
                    "catchup_lag": self.lag,
                },
            )


__all__ = ["Reporter", "eta_seconds", "render"]
