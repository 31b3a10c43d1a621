"""Backoff: exponential ceilings capped at the maximum, full-jitter delays under them."""

from __future__ import annotations

import asyncio
import random

import pytest

from stream_indexer.backoff import Backoff, RetryAbortedError, RetryPolicy, retry
from stream_indexer.errors import SchemaInvalidError, SinkUnavailableError


def test_ceilings_grow_by_the_multiplier_and_cap_at_the_max() -> None:
    backoff = Backoff(initial_s=0.5, multiplier=3.0, max_s=10.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1.5, 4.5, 10.0, 10.0, 10.0]


def test_defaults_double_from_200_ms_up_to_30_s() -> None:
    backoff = Backoff()
    assert backoff.ceiling(1) == pytest.approx(0.2)
    assert backoff.ceiling(2) == pytest.approx(0.4)
    assert backoff.ceiling(3) == pytest.approx(0.8)
    assert backoff.ceiling(100) == 30.0


def test_attempt_zero_or_below_uses_the_initial_ceiling() -> None:
    backoff = Backoff(initial_s=1.0, multiplier=2.0, max_s=5.0)
    assert backoff.ceiling(0) == 1.0
    assert backoff.ceiling(-3) == 1.0


def test_a_huge_attempt_count_neither_overflows_nor_exceeds_the_cap() -> None:
    backoff = Backoff(initial_s=0.1, multiplier=10.0, max_s=7.0)
    assert backoff.ceiling(10_000) == 7.0


def test_multiplier_one_is_constant() -> None:
    backoff = Backoff(initial_s=0.3, multiplier=1.0, max_s=30.0)
    assert {backoff.ceiling(n) for n in range(1, 20)} == {0.3}


def test_delays_stay_within_zero_and_the_ceiling() -> None:
    backoff = Backoff(initial_s=0.2, multiplier=2.0, max_s=3.0)
    rng = random.Random(1234)
    for attempt in range(1, 12):
        ceiling = backoff.ceiling(attempt)
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # full jitter: spread over the whole range, not bunched at the top (equal jitter)
        assert min(delays) < ceiling * 0.25
        assert max(delays) > ceiling * 0.75


def test_delays_are_reproducible_with_a_seeded_rng() -> None:
    backoff = Backoff()
    first = [backoff.delay(n, random.Random(42)) for n in range(1, 8)]
    second = [backoff.delay(n, random.Random(42)) for n in range(1, 8)]
    assert first == second


def test_delay_without_an_rng_is_within_bounds() -> None:
    backoff = Backoff(initial_s=0.01, multiplier=2.0, max_s=0.05)
    assert all(0.0 <= backoff.delay(n) <= backoff.ceiling(n) for n in range(1, 10))


# -- retry(): one loop, three policies, the classifier decides ----------------------------

NO_WAIT = Backoff(initial_s=0.0, multiplier=1.0, max_s=0.0)


class Flaky:
    """Fails with `errors` in order, then returns `result`; counts calls."""

    def __init__(self, *errors: BaseException, result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0
        self.called = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        self.called.set()
        if self.errors:
            raise self.errors.pop(0)
        return self.result


async def test_forever_retries_retriable_errors_until_success() -> None:
    operation = Flaky(*(SinkUnavailableError("down") for _ in range(5)))
    seen: list[int] = []
    result = await retry(
        operation, RetryPolicy.forever(NO_WAIT), on_retry=lambda n, _e, _d: seen.append(n)
    )
    assert result == "ok" and operation.calls == 6 and seen == [1, 2, 3, 4, 5]


async def test_a_non_retriable_error_is_raised_at_once() -> None:
    operation = Flaky(SchemaInvalidError("never"))
    with pytest.raises(SchemaInvalidError):
        await retry(operation, RetryPolicy.forever(NO_WAIT))
    assert operation.calls == 1


async def test_the_classifier_decides_not_the_error_type() -> None:
    operation = Flaky(ValueError("odd"), ValueError("odd"))
    result = await retry(
        operation, RetryPolicy.forever(NO_WAIT), retriable=lambda e: isinstance(e, ValueError)
    )
    assert result == "ok" and operation.calls == 3


async def test_bounded_by_attempts_raises_the_last_error() -> None:
    operation = Flaky(*(SinkUnavailableError(f"down {n}") for n in range(10)))
    with pytest.raises(SinkUnavailableError, match="down 2"):
        await retry(operation, RetryPolicy.bounded(NO_WAIT, attempts=3))
    assert operation.calls == 3


async def test_bounded_by_elapsed_time() -> None:
    operation = Flaky(*(SinkUnavailableError("down") for _ in range(10)))
    with pytest.raises(SinkUnavailableError):
        await retry(operation, RetryPolicy.bounded(NO_WAIT, elapsed_s=0.0))
    assert operation.calls == 1


def test_a_bounded_policy_needs_a_bound() -> None:
    with pytest.raises(ValueError):
        RetryPolicy.bounded(NO_WAIT)


async def test_until_stopped_ends_the_wait_when_stop_is_set() -> None:
    stop = asyncio.Event()
    long_wait = Backoff(initial_s=3600.0, multiplier=1.0, max_s=3600.0)
    operation = Flaky(*(SinkUnavailableError("down") for _ in range(10)))
    task = asyncio.create_task(retry(operation, RetryPolicy.until_stopped(long_wait, stop)))
    await operation.called.wait()
    stop.set()
    with pytest.raises(RetryAbortedError):
        await task
    assert operation.calls == 1


async def test_until_stopped_still_makes_the_first_try() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await retry(Flaky(), RetryPolicy.until_stopped(NO_WAIT, stop)) == "ok"
    failing = Flaky(SinkUnavailableError("down"))
    with pytest.raises(RetryAbortedError):
        await retry(failing, RetryPolicy.until_stopped(NO_WAIT, stop))
    assert failing.calls == 1
