"""The emit queue's bound: full means an immediate answer, or a wait capped by the monotonic
clock inside the call; settling frees room; closing releases waiters."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from stream_indexer.producer.handoff import Admission, HandOff


def test_a_full_queue_answers_at_once_without_a_deadline() -> None:
    handoff: HandOff[str] = HandOff(2)
    assert handoff.put("a") is Admission.QUEUED
    assert handoff.put("b") is Admission.QUEUED
    assert handoff.put("c") is Admission.FULL
    assert handoff.unsettled == 2 and handoff.queued == 2
    assert handoff.take_all() == ["a", "b"]  # taken by the sender, still unacknowledged
    assert handoff.put("c") is Admission.FULL  # the bound counts unsettled, not queued
    assert handoff.settle() == 1
    assert handoff.put("c") is Admission.QUEUED


def test_a_full_queue_waits_until_the_deadline_then_gives_up() -> None:
    handoff: HandOff[str] = HandOff(1)
    handoff.put("a")
    started = time.monotonic()
    assert handoff.put("b", deadline=started + 0.05) is Admission.FULL
    waited = time.monotonic() - started
    assert 0.05 <= waited < 2.0


def test_a_deadline_in_the_past_does_not_wait() -> None:
    handoff: HandOff[str] = HandOff(1)
    handoff.put("a")
    assert handoff.put("b", deadline=time.monotonic() - 1) is Admission.FULL


def test_a_waiting_caller_takes_the_room_a_settle_frees() -> None:
    handoff: HandOff[str] = HandOff(1)
    handoff.put("a")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(handoff.put, "b", deadline=time.monotonic() + 60)
        handoff.settle()
        assert waiting.result(timeout=30) is Admission.QUEUED
    assert handoff.take_all() == ["a", "b"]


def test_closing_releases_waiters_and_refuses_new_items() -> None:
    handoff: HandOff[str] = HandOff(1)
    handoff.put("a")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(handoff.put, "b", deadline=time.monotonic() + 60)
        handoff.close()
        assert waiting.result(timeout=30) is Admission.CLOSED
    assert handoff.put("c") is Admission.CLOSED


def test_the_first_item_after_an_idle_take_asks_for_a_wake_up() -> None:
    handoff: HandOff[str] = HandOff(10)
    assert handoff.take_all() == []  # the sender found nothing and goes to sleep
    assert handoff.put("a") is Admission.WAKE
    assert handoff.put("b") is Admission.QUEUED  # already woken: no second wake-up


def test_overflow_is_bounded_too() -> None:
    handoff: HandOff[str] = HandOff(1)
    handoff.put("a")
    assert handoff.admit_overflow()  # one more may go to the outbox
    assert not handoff.admit_overflow()
    assert handoff.unsettled == 2


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HandOff(0)
