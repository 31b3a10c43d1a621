"""The in-flight limit: back pressure and rising latency lower it, a steady sink raises it,
and it never leaves its bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_indexer.opensearch.concurrency import MIN_PERIOD_S, ConcurrencyController

DOCS = 1_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _period(
    controller: ConcurrencyController, clock: Clock, seconds: float, *, busy: bool = True
) -> None:
    """One full adjustment period of requests taking `seconds` each (limit used if busy)."""
    if busy:
        controller.sent(controller.limit)
    controller.answered(
        seconds, DOCS, clock.tick(max(seconds, MIN_PERIOD_S) + 1e-3), back_pressure=False
    )


def _settled(initial: int, *, max_limit: int = 8) -> tuple[ConcurrencyController, Clock]:
    clock = Clock()
    controller = ConcurrencyController(min_limit=1, max_limit=max_limit, initial=initial)
    _period(controller, clock, 0.1, busy=False)  # sets the baseline
    return controller, clock


def test_steady_latency_with_the_limit_reached_raises_it_one_at_a_time() -> None:
    controller, clock = _settled(1)
    seen = [controller.limit]
    for _ in range(5):
        _period(controller, clock, 0.1)
        seen.append(controller.limit)
    assert seen == [1, 2, 3, 4, 5, 6]


def test_an_unused_limit_is_not_raised() -> None:
    controller, clock = _settled(2)
    for _ in range(5):
        _period(controller, clock, 0.1, busy=False)
    assert controller.limit == 2


def test_rising_latency_lowers_it() -> None:
    controller, clock = _settled(6)
    for _ in range(3):
        _period(controller, clock, 0.1)
    before = controller.limit
    _period(controller, clock, 0.3)
    assert controller.limit < before


def test_latency_is_judged_per_document_so_a_larger_request_is_not_a_slower_sink() -> None:
    controller, clock = _settled(4)
    controller.sent(4)
    # five times the documents in five times the time: the same cost per document
    controller.answered(0.5, DOCS * 5, clock.tick(0.6), back_pressure=False)
    assert controller.limit == 5


def test_items_refused_for_load_lower_it_at_once() -> None:
    controller, clock = _settled(8)
    controller.answered(0.01, DOCS, clock.tick(0.001), back_pressure=True)
    assert controller.limit == 7  # 8 x 0.9, before the period is over


def test_a_failed_request_lowers_it_and_repeated_failures_reach_the_floor() -> None:
    controller, clock = _settled(8)
    for _ in range(30):
        controller.failed(clock.tick(0.001))
    assert controller.limit == 1
    assert controller.decreases >= 7


def test_small_limits_still_go_down() -> None:
    controller, clock = _settled(2)
    controller.failed(clock.tick(0.001))
    assert controller.limit == 1


def test_it_comes_back_up_after_the_overload_passes() -> None:
    controller, clock = _settled(4, max_limit=4)
    for _ in range(10):
        controller.failed(clock.tick(0.01))
    assert controller.limit == 1
    for _ in range(10):
        _period(controller, clock, 0.1)
    assert controller.limit == 4


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="bounds"):
        ConcurrencyController(min_limit=0, max_limit=4)
    with pytest.raises(ValueError, match="bounds"):
        ConcurrencyController(min_limit=5, max_limit=4)


@given(
    st.integers(1, 4),
    st.integers(0, 12),
    st.lists(
        st.tuples(
            st.sampled_from(["ok", "slow", "pressure", "failed"]),
            st.floats(0.0001, 5.0),
            st.integers(1, 20_000),
            st.booleans(),
        ),
        max_size=60,
    ),
)
def test_never_outside_its_bounds(
    low: int, extra: int, events: list[tuple[str, float, int, bool]]
) -> None:
    high = low + extra
    clock = Clock()
    controller = ConcurrencyController(min_limit=low, max_limit=high, initial=high)
    for kind, seconds, docs, busy in events:
        if busy:
            controller.sent(controller.limit)
        now = clock.tick(seconds)
        if kind == "failed":
            controller.failed(now)
        else:
            controller.answered(
                seconds * (10 if kind == "slow" else 1), docs, now, back_pressure=kind == "pressure"
            )
        assert low <= controller.limit <= high
