"""Retry timing: exponential backoff with full jitter, shared by every retry loop.

Full jitter (AWS architecture blog, "Exponential Backoff and Jitter") spreads retries of
many pods hitting the same overloaded cluster: sleep uniform(0, min(cap, base * m^n)).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays for attempt 1, 2, ... (seconds)."""

    initial_s: float = 0.2
    multiplier: float = 2.0
    max_s: float = 30.0

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay after `attempt` failures (attempt >= 1)."""
        exponent = min(max(attempt - 1, 0), 64)
        return float(min(self.max_s, self.initial_s * self.multiplier**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A full-jitter delay: uniform between 0 and the ceiling."""
        return (rng or random).uniform(0.0, self.ceiling(attempt))
