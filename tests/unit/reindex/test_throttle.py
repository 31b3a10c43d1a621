"""The backfill's throttle: the token bucket's rate and the AIMD page size (pure logic)."""

from __future__ import annotations

import asyncio

from stream_indexer.reindex.throttle import Aimd, LiveGate, LiveProbe, PageSignal, TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_bucket_holds_the_rate_over_many_pages() -> None:
    time = FakeTime()
    bucket = TokenBucket(100.0, burst=100.0, clock=time.clock, sleep=time.sleep)
    for _ in range(50):
        await bucket.take(50)
    # 2,500 documents at 100/s: 25 s, less the 1 s the initial burst covers
    assert abs(time.now - 24.0) < 1e-6


async def test_a_page_larger_than_the_burst_goes_into_debt_instead_of_waiting_forever() -> None:
    time = FakeTime()
    bucket = TokenBucket(10.0, burst=10.0, clock=time.clock, sleep=time.sleep)
    await bucket.take(100)
    assert time.now == 0.0
    await bucket.take(10)  # pays the debt: (10 + 90) / 10 s
    assert abs(time.now - 10.0) < 1e-6


async def test_rate_zero_never_waits() -> None:
    time = FakeTime()
    bucket = TokenBucket(0.0, clock=time.clock, sleep=time.sleep)
    for _ in range(10):
        await bucket.take(10_000)
    assert time.slept == []


def test_aimd_grows_additively_and_halves_on_overload() -> None:
    aimd = Aimd(maximum=1_000, minimum=50, step=100)
    aimd.size = 400
    assert aimd.observe(PageSignal(latency_s=0.4), 400) == 500
    assert aimd.observe(PageSignal(latency_s=0.5, overloaded=3), 500) == 250
    assert aimd.reason == "overload"
    for _ in range(20):
        aimd.observe(PageSignal(latency_s=0.001), 250)
    assert aimd.size == 1_000, "never beyond the maximum"


def test_aimd_halves_when_latency_rises_against_the_best_seen() -> None:
    aimd = Aimd(maximum=1_000, minimum=50, latency_factor=3.0)
    aimd.observe(PageSignal(latency_s=1.0), 1_000)  # 1 ms per doc: the best
    assert aimd.observe(PageSignal(latency_s=2.0), 1_000) == 1_000  # slower, within the factor
    assert aimd.observe(PageSignal(latency_s=4.0), 1_000) == 500
    assert aimd.reason == "latency"


def test_aimd_halves_when_the_live_group_lag_grows_and_never_below_the_minimum() -> None:
    aimd = Aimd(maximum=400, minimum=100, lag_growth=1_000)
    aimd.observe(PageSignal(latency_s=0.1, live_lag=10), 400)
    aimd.observe(PageSignal(latency_s=0.1, live_lag=500), 400)  # grew by 490: fine
    assert aimd.size == 400
    assert aimd.observe(PageSignal(latency_s=0.1, live_lag=1_600), 400) == 200
    assert aimd.reason == "live_lag"
    aimd.observe(PageSignal(latency_s=0.1, overloaded=1), 200)
    aimd.observe(PageSignal(latency_s=0.1, overloaded=1), 100)
    assert aimd.size == 100
    assert aimd.decreases == 3


# -- live gate: live traffic first ---------------------------------------------------------


def _probe(produced: int, committed: int, at: float) -> LiveProbe:
    return LiveProbe(produced=produced, committed=committed, lag=produced - committed, at=at)


def test_the_gate_holds_while_the_live_group_is_seconds_behind_and_committing() -> None:
    gate = LiveGate(3.0, smoothing=1.0)
    gate.observe(_probe(2_000, 500, at=0.0))
    assert not gate.hold and gate.open.is_set()  # one reading says nothing about a rate
    # 500 records/s produced; 2,000 behind = 4 s of traffic; the group committed meanwhile
    gate.observe(_probe(3_000, 1_000, at=2.0))
    assert gate.behind_s == 4.0
    assert gate.hold and not gate.open.is_set()
    # the live group caught up to 1 s of traffic: the backfill goes on
    gate.observe(_probe(4_000, 3_500, at=4.0))
    assert gate.behind_s == 1.0
    assert not gate.hold and gate.open.is_set()


def test_a_live_group_that_stopped_committing_is_not_waited_for() -> None:
    gate = LiveGate(3.0, smoothing=1.0)
    gate.observe(_probe(1_000, 500, at=0.0))
    gate.observe(_probe(3_000, 500, at=2.0))
    assert gate.behind_s == 2_500 / 1_000
    gate.observe(_probe(5_000, 500, at=4.0))
    assert gate.behind_s > 3.0
    assert not gate.hold, "waiting does not help a group that commits nothing"


def test_a_backlog_with_no_new_traffic_holds_until_drained_and_zero_turns_it_off() -> None:
    gate = LiveGate(3.0, smoothing=1.0)
    gate.observe(_probe(10_000, 1_000, at=0.0))
    gate.observe(_probe(10_000, 4_000, at=2.0))
    assert gate.behind_s == float("inf") and gate.hold
    gate.observe(_probe(10_000, 10_000, at=4.0))
    assert gate.behind_s == 0.0 and not gate.hold
    off = LiveGate(0.0, smoothing=1.0)
    off.observe(_probe(10_000, 1_000, at=0.0))
    off.observe(_probe(10_000, 4_000, at=2.0))
    assert not off.hold


def test_a_live_group_stuck_behind_a_backfill_request_is_still_waited_for() -> None:
    gate = LiveGate(3.0, stall_s=10.0, smoothing=1.0)
    gate.observe(_probe(1_000, 500, at=0.0))
    gate.observe(_probe(1_500, 1_000, at=1.0))  # committing, 0.5 s of traffic behind
    assert not gate.hold
    # its bulk is queued behind a backfill request: no commit for 4 s, lag growing
    gate.observe(_probe(2_500, 1_000, at=3.0))
    gate.observe(_probe(3_500, 1_000, at=5.0))
    assert gate.behind_s == 5.0
    assert gate.hold, "a stall shorter than stall_s is the backfill's doing: wait"
    # nothing committed for more than stall_s: its pods are down, waiting does not help
    gate.observe(_probe(9_500, 1_000, at=11.5))
    assert gate.behind and not gate.hold


def test_aimd_halves_the_page_after_waiting_for_the_live_group_and_grows_back() -> None:
    aimd = Aimd(maximum=2_000, minimum=50, step=200)
    assert aimd.observe(PageSignal(latency_s=1.0, live_behind=True), 2_000) == 1_000
    assert aimd.reason == "live_behind"
    assert aimd.observe(PageSignal(latency_s=0.5, live_behind=True), 1_000) == 500
    sizes = [aimd.observe(PageSignal(latency_s=0.25), 500) for _ in range(3)]
    assert sizes == [700, 900, 1_100], "additive increase once the live group keeps up"


async def test_wait_returns_at_once_when_open_and_is_bounded_when_held() -> None:
    time = FakeTime()
    gate = LiveGate(3.0, smoothing=1.0, clock=time.clock)
    time.now = 600.0  # long under way: the hold allowance is not what bounds these waits
    assert await gate.wait(0.01) is False
    gate.observe(_probe(2_000, 500, at=0.0))
    gate.observe(_probe(3_000, 1_000, at=2.0))  # 4 s behind and committing: holds
    assert gate.hold
    assert await gate.wait(0.01) is True, "held, then let go after max_s"
    waiter = asyncio.create_task(gate.wait(60.0))
    await asyncio.sleep(0)
    gate.observe(_probe(4_000, 3_900, at=4.0))  # caught up: the gate opens
    assert await waiter is True


async def test_holds_add_up_to_at_most_their_share_of_the_time() -> None:
    time = FakeTime()
    gate = LiveGate(3.0, hold_share=0.5, smoothing=1.0, clock=time.clock)
    gate.observe(_probe(2_000, 500, at=0.0))
    gate.observe(_probe(3_000, 1_000, at=2.0))  # behind and committing: holds
    assert gate.hold
    assert gate.allowance() == 0.0
    assert await gate.wait(60.0) is False, "no time run yet: nothing to give away"
    time.now = 10.0
    assert gate.allowance() == 5.0
    gate.held_s = 5.0  # held half of those 10 s already
    assert await gate.wait(60.0) is False
    time.now = 12.0
    assert gate.allowance() == 1.0


def test_slow_start_doubles_until_full_or_the_first_decrease() -> None:
    aimd = Aimd(maximum=2_000, minimum=50, step=200)
    aimd.slow_start()
    assert aimd.size == 250 and aimd.slow
    sizes = [aimd.observe(PageSignal(latency_s=0.1), aimd.size) for _ in range(3)]
    assert sizes == [500, 1_000, 2_000]
    assert not aimd.slow, "full size: additive from here"
    again = Aimd(maximum=2_000, minimum=50, step=200)
    again.slow_start()
    again.observe(PageSignal(latency_s=0.1), 250)  # 500
    assert again.observe(PageSignal(latency_s=0.1, live_behind=True), 500) == 250
    assert again.observe(PageSignal(latency_s=0.05), 250) == 450, "additive after a decrease"


def test_the_gate_says_whether_the_live_topic_has_traffic_once_rated() -> None:
    quiet = LiveGate(3.0, smoothing=1.0)
    quiet.observe(_probe(0, 0, at=0.0))
    assert not quiet.rated.is_set()
    quiet.observe(_probe(0, 0, at=0.5))
    assert quiet.rated.is_set() and not quiet.live_traffic
    busy = LiveGate(3.0, smoothing=1.0)
    busy.observe(_probe(100, 100, at=0.0))
    busy.observe(_probe(350, 300, at=0.5))
    assert busy.live_traffic


async def test_each_hold_is_reported_with_its_stage_and_seconds_once_it_ends() -> None:
    time, holds = FakeTime(), list[tuple[str, float]]()
    gate = LiveGate(3.0, smoothing=1.0, clock=time.clock, on_hold=lambda *hold: holds.append(hold))
    time.now = 600.0
    assert await gate.wait(60.0, stage="catchup") is False
    assert holds == [], "an open gate is no hold"
    gate.observe(_probe(2_000, 500, at=0.0))
    gate.observe(_probe(3_000, 1_000, at=2.0))  # 4 s behind and committing: holds
    waiter = asyncio.create_task(gate.wait(60.0, stage="catchup"))
    await asyncio.sleep(0)
    assert holds == [], "counted when the hold ends"
    time.now = 602.5
    gate.observe(_probe(4_000, 3_900, at=4.0))  # caught up: the gate opens
    assert await waiter is True
    assert holds == [("catchup", 2.5)]
    assert gate.held_s == 2.5
