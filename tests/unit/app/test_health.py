"""Liveness and readiness decisions (the stall detector), driven through a fake clock."""

from __future__ import annotations

import pytest

from stream_indexer.app.health import Health
from stream_indexer.opensearch.circuit import CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def health(clock: Clock, stall_timeout_s: float = 60.0) -> Health:
    return Health(stall_timeout_s=stall_timeout_s, max_fetch_idle_s=30.0, clock=clock)


def test_behind_with_no_commit_for_the_stall_timeout_fails_liveness(clock: Clock) -> None:
    h = health(clock)
    clock.now += 120
    h.fetched()
    alive, detail = h.liveness(fetch_loop_exited=False, outage=False)
    assert not alive and "stalled" in detail


def test_idle_but_caught_up_is_alive(clock: Clock) -> None:
    h = health(clock)
    clock.now += 3600  # nothing to commit for an hour ...
    h.fetched()
    h.caught_up()  # ... because there is no lag
    assert h.liveness(fetch_loop_exited=False, outage=False)[0]


def test_a_recent_commit_keeps_a_lagging_member_alive(clock: Clock) -> None:
    h = health(clock)
    clock.now += 120
    h.fetched()
    h.committed()
    assert h.liveness(fetch_loop_exited=False, outage=False)[0]


def test_an_outage_is_not_a_stall(clock: Clock) -> None:
    h = health(clock)
    clock.now += 120
    h.fetched()
    assert h.liveness(fetch_loop_exited=False, outage=True)[0]


def test_no_fetch_for_longer_than_allowed_fails_liveness(clock: Clock) -> None:
    h = health(clock)
    clock.now += 31
    h.caught_up()
    alive, detail = h.liveness(fetch_loop_exited=False, outage=False)
    assert not alive and "no fetch" in detail


def test_a_dead_fetch_loop_fails_liveness(clock: Clock) -> None:
    alive, detail = health(clock).liveness(fetch_loop_exited=True, outage=False)
    assert not alive and "exited" in detail


@pytest.mark.parametrize(
    ("state", "reason"), [(CircuitState.OPEN, "open"), (CircuitState.HALF_OPEN, "half_open")]
)
def test_a_circuit_that_is_not_closed_is_not_ready(
    clock: Clock, state: CircuitState, reason: str
) -> None:
    ready, detail = health(clock).readiness(stopping=False, circuit=state, partitions=3)
    assert not ready and reason in detail


def test_readiness_names_held_letters_and_stopping(clock: Clock) -> None:
    h = health(clock)
    ready, detail = h.readiness(
        stopping=False, circuit=CircuitState.CLOSED, partitions=2, held_letters="3 held"
    )
    assert not ready and detail == "3 held"
    assert h.readiness(stopping=True, circuit=CircuitState.CLOSED, partitions=2) == (
        False,
        "stopping",
    )


def test_ready_with_or_without_partitions(clock: Clock) -> None:
    h = health(clock)
    assert h.readiness(stopping=False, circuit=CircuitState.CLOSED, partitions=0)[0]
    ready, detail = h.readiness(stopping=False, circuit=CircuitState.CLOSED, partitions=4)
    assert ready and "4 partitions" in detail
