"""Retrying, core: exponential backoff with full jitter and the one retry loop every part uses.

Full jitter (AWS architecture blog, "Exponential Backoff and Jitter") spreads retries of
many pods hitting the same overloaded cluster: sleep uniform(0, min(cap, base * m^n)).
`retry(operation, policy, retriable=...)` is the only "try again" loop in the service: the
policy says how long (forever, bounded, until stopped), the classifier says what is worth
another try, so a store that is down is waited for while a record that can never succeed is
handed back to the caller at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from stream_indexer.errors import RetryAbortedError

if TYPE_CHECKING:
    from stream_indexer.settings import RetrySettings

T = TypeVar("T")


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

    @classmethod
    def from_settings(cls, retry: RetrySettings) -> Backoff:
        """The pipeline's backoff (`RETRY__INITIAL_BACKOFF_MS`, `MULTIPLIER`, `MAX_BACKOFF_MS`)."""
        return cls(retry.initial_backoff_ms / 1000, retry.multiplier, retry.max_backoff_ms / 1000)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long one retry loop keeps going: forever, a bounded budget, or until stopped.

    Build one with `forever`, `bounded` or `until_stopped`; `retry()` runs it. Which errors
    are worth another attempt is not the policy's business: the caller's classifier decides
    (by default the error's `retriable` flag, as on `StreamIndexerError` and aiokafka errors).
    """

    backoff: Backoff = Backoff()
    max_attempts: int | None = None
    max_elapsed_s: float | None = None
    stop: asyncio.Event | None = None

    @classmethod
    def forever(cls, backoff: Backoff) -> RetryPolicy:
        """Retry until the operation succeeds or fails with a non-retriable error."""
        return cls(backoff)

    @classmethod
    def bounded(
        cls, backoff: Backoff, *, attempts: int | None = None, elapsed_s: float | None = None
    ) -> RetryPolicy:
        """Give up (re-raise the last error) after `attempts` tries or `elapsed_s` seconds."""
        if attempts is None and elapsed_s is None:
            raise ValueError("a bounded retry policy needs attempts or elapsed_s")
        return cls(backoff, max_attempts=attempts, max_elapsed_s=elapsed_s)

    @classmethod
    def until_stopped(cls, backoff: Backoff, stop: asyncio.Event) -> RetryPolicy:
        """Retry until success, or raise RetryAbortedError once `stop` is set."""
        return cls(backoff, stop=stop)

    def exhausted(self, attempts: int, elapsed_s: float) -> bool:
        """True when `attempts` failures over `elapsed_s` seconds use up the budget."""
        return (self.max_attempts is not None and attempts >= self.max_attempts) or (
            self.max_elapsed_s is not None and elapsed_s >= self.max_elapsed_s
        )


def is_retriable(exc: BaseException) -> bool:
    """The default classifier: the error says so itself (`retriable = True`)."""
    return bool(getattr(exc, "retriable", False))


OnRetry = Callable[[int, BaseException, float], None]


async def retry(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retriable: Callable[[BaseException], bool] = is_retriable,
    on_retry: OnRetry | None = None,
) -> T:
    """Await `operation()` until it succeeds, sleeping a full-jitter backoff between tries.

    An error `retriable` rejects is raised at once (this record or request can never
    succeed: the caller dead-letters or stops). A retriable one is retried until the policy
    is exhausted, then raised as itself. `on_retry(attempt, error, delay_s)` runs before each
    sleep, for logs and metrics. With a stop event the first try always runs (a stop ends
    the waiting, not the work); after a failure the sleep ends early when stop is set, and
    RetryAbortedError is raised instead of another try.
    """
    attempt = 0
    started = time.monotonic()
    stop = policy.stop
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not retriable(exc):
                raise
            attempt += 1
            if policy.exhausted(attempt, time.monotonic() - started):
                raise
            delay = policy.backoff.delay(attempt)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
        if stop is None:
            await asyncio.sleep(delay)
            continue
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            raise RetryAbortedError("stopped while retrying")
