"""Commit watermark: out-of-order completion commits only up to the first unfinished span."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_indexer.pipeline.offsets import OffsetTracker


def test_nothing_is_committable_until_the_first_span_completes() -> None:
    tracker = OffsetTracker()
    first = tracker.begin(0, 9, fetched_at=1.0)
    second = tracker.begin(10, 19, fetched_at=2.0)
    assert tracker.committable is None

    # a later span finishing first must not make anything committable
    assert tracker.complete(second) is None
    assert tracker.committable is None

    assert tracker.complete(first) == 20
    assert tracker.committable == 20


def test_out_of_order_completion_commits_up_to_the_first_unfinished_span() -> None:
    tracker = OffsetTracker()
    a = tracker.begin(0, 4, fetched_at=1.0)
    b = tracker.begin(5, 9, fetched_at=2.0)
    c = tracker.begin(10, 14, fetched_at=3.0)
    d = tracker.begin(15, 19, fetched_at=4.0)

    assert tracker.complete(a) == 5
    assert tracker.complete(c) == 5  # b is still in flight: c's end is not committable
    assert tracker.committable == 5
    assert tracker.spans_in_flight == 3  # b, c (done, waiting behind b), d

    assert tracker.complete(b) == 15  # b closes the gap: a run a..c is done
    assert tracker.spans_in_flight == 1
    assert tracker.complete(d) == 20
    assert tracker.spans_in_flight == 0


def test_holes_in_the_log_between_spans_never_stall_the_watermark() -> None:
    """Offsets skipped by transaction markers or compaction are never waited for."""
    tracker = OffsetTracker()
    a = tracker.begin(3, 7, fetched_at=1.0)  # 0..2 compacted away
    b = tracker.begin(12, 12, fetched_at=2.0)  # 8..11: markers / compacted
    c = tracker.begin(40, 41, fetched_at=3.0)

    assert tracker.complete(a) == 8
    assert tracker.complete(b) == 13
    assert tracker.complete(c) == 42
    assert tracker.spans_in_flight == 0


def test_initial_committable_is_kept_until_a_span_completes() -> None:
    tracker = OffsetTracker(committable=100)
    token = tracker.begin(100, 104, fetched_at=1.0)
    assert tracker.committable == 100
    assert tracker.complete(token) == 105


def test_oldest_pending_since_follows_the_oldest_unfinished_span() -> None:
    tracker = OffsetTracker()
    assert tracker.oldest_pending_since() is None

    a = tracker.begin(0, 0, fetched_at=10.0)
    b = tracker.begin(1, 1, fetched_at=20.0)
    c = tracker.begin(2, 2, fetched_at=30.0)
    assert tracker.oldest_pending_since() == 10.0

    tracker.complete(b)  # done, but not the oldest: nothing changes
    assert tracker.oldest_pending_since() == 10.0

    tracker.complete(a)  # a and b leave; c is now the oldest unfinished span
    assert tracker.oldest_pending_since() == 30.0

    tracker.complete(c)
    assert tracker.oldest_pending_since() is None


def test_completing_an_unknown_token_raises() -> None:
    tracker = OffsetTracker()
    with pytest.raises(KeyError):
        tracker.complete(0)


def test_completing_a_token_twice_raises() -> None:
    tracker = OffsetTracker()
    token = tracker.begin(0, 1, fetched_at=1.0)
    tracker.complete(token)
    with pytest.raises(KeyError):
        tracker.complete(token)


def test_a_span_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError):
        OffsetTracker().begin(5, 4, fetched_at=1.0)


@st.composite
def spans_and_completion_order(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[int]]:
    """Consecutive spans with random lengths and holes, and a random completion order."""
    count = draw(st.integers(min_value=1, max_value=12))
    spans: list[tuple[int, int]] = []
    offset = draw(st.integers(min_value=0, max_value=1_000))
    for _ in range(count):
        offset += draw(st.integers(min_value=0, max_value=5))  # a hole in the log, or none
        length = draw(st.integers(min_value=1, max_value=10))
        spans.append((offset, offset + length - 1))
        offset += length
    order = draw(st.permutations(range(count)))
    return spans, list(order)


@given(spans_and_completion_order())
def test_committable_is_the_end_of_the_longest_finished_prefix(
    case: tuple[list[tuple[int, int]], list[int]],
) -> None:
    spans, order = case
    tracker = OffsetTracker()
    tokens = [
        tracker.begin(first, last, fetched_at=float(i)) for i, (first, last) in enumerate(spans)
    ]
    done: set[int] = set()
    for index in order:
        returned = tracker.complete(tokens[index])
        done.add(index)

        prefix = 0
        while prefix < len(spans) and prefix in done:
            prefix += 1
        expected = spans[prefix - 1][1] + 1 if prefix else None
        assert returned == expected
        assert tracker.committable == expected
        if prefix < len(spans):
            # never past the first record still in flight
            first_unfinished_start = spans[prefix][0]
            assert expected is None or expected <= first_unfinished_start
            assert tracker.oldest_pending_since() == float(prefix)
        else:
            assert tracker.oldest_pending_since() is None
    assert tracker.committable == spans[-1][1] + 1
    assert tracker.spans_in_flight == 0
