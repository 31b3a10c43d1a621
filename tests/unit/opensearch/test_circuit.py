"""Circuit breaker logic: when it opens, how probes (bounded by their timeout) close it."""

from __future__ import annotations

import asyncio

from stream_indexer.backoff import Backoff
from stream_indexer.opensearch.circuit import CircuitBreaker, CircuitState

NO_WAIT = Backoff(0.0, 1.0, 0.0)


class Probe:
    """A scripted probe: each call takes the next answer; `None` never answers."""

    def __init__(self, *answers: bool | None) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.called = asyncio.Event()

    async def __call__(self) -> bool:
        self.calls += 1
        self.called.set()
        answer = self.answers.pop(0) if self.answers else True
        if answer is None:
            await asyncio.get_running_loop().create_future()  # a blackholed sink
        return bool(answer)


def _circuit(probe: Probe, **kwargs: object) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, probe=probe, probe_backoff=NO_WAIT, **kwargs)  # type: ignore[arg-type]


async def test_opens_after_the_threshold_of_consecutive_failures_only() -> None:
    circuit = _circuit(Probe(False))
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()  # resets the count
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state is CircuitState.CLOSED
    circuit.record_failure()
    assert circuit.is_open and circuit.opened_total == 1
    await circuit.stop()


async def test_an_answering_probe_half_opens_then_a_success_closes() -> None:
    circuit = _circuit(Probe(False, True))
    for _ in range(3):
        circuit.record_failure()
    await asyncio.wait_for(circuit.wait_passable(), 5)
    assert circuit.state is CircuitState.HALF_OPEN
    circuit.record_success()
    assert circuit.state is CircuitState.CLOSED
    await circuit.stop()


async def test_a_failure_while_half_open_opens_again() -> None:
    circuit = _circuit(Probe(True, True))
    for _ in range(3):
        circuit.record_failure()
    await asyncio.wait_for(circuit.wait_passable(), 5)
    circuit.record_failure()
    assert circuit.is_open and circuit.opened_total == 2
    await circuit.stop()


async def test_a_probe_that_never_answers_is_cut_by_the_probe_timeout() -> None:
    probe = Probe(None, True)
    circuit = _circuit(probe, probe_timeout_s=0.05)
    for _ in range(3):
        circuit.record_failure()
    # without the probe timeout the first probe would hold the circuit open for ever
    await asyncio.wait_for(circuit.wait_passable(), 5)
    assert probe.calls == 2 and circuit.state is CircuitState.HALF_OPEN
    await circuit.stop()


async def test_a_probe_that_raises_counts_as_no_answer() -> None:
    answers = iter([RuntimeError("boom")])

    async def probe() -> bool:
        error = next(answers, None)
        if error is not None:
            raise error
        return True

    circuit = CircuitBreaker(failure_threshold=1, probe=probe, probe_backoff=NO_WAIT)
    circuit.record_failure()
    await asyncio.wait_for(circuit.wait_passable(), 5)
    assert circuit.state is CircuitState.HALF_OPEN
    await circuit.stop()


async def test_recovery_reports_when_the_answering_probe_was_sent() -> None:
    reported: list[float] = []
    loop = asyncio.get_running_loop()
    circuit = _circuit(Probe(True), on_recovered=reported.append)
    before = loop.time()
    for _ in range(3):
        circuit.record_failure()
    await asyncio.wait_for(circuit.wait_passable(), 5)
    assert len(reported) == 1 and reported[0] >= before - 1
    await circuit.stop()


async def test_close_stops_probing_and_lets_waiters_through() -> None:
    probe = Probe(None)
    circuit = _circuit(probe, probe_timeout_s=60)
    for _ in range(3):
        circuit.record_failure()
    await asyncio.wait_for(probe.called.wait(), 5)
    await circuit.stop()
    await asyncio.wait_for(circuit.wait_passable(), 1)
