"""Backoff: exponential ceilings capped at the maximum, full-jitter delays under them."""

from __future__ import annotations

import random

import pytest

from stream_indexer.backoff import Backoff


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
