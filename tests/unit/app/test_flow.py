"""Flow control: full buffers pause their partition, drained ones resume, the circuit pauses
everything, and a fetch never asks for more records than the smallest room left."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition

from stream_indexer.app.flow import FlowControl
from stream_indexer.backoff import Backoff
from stream_indexer.opensearch.circuit import CircuitBreaker, CircuitState
from stream_indexer.pipeline.worker import PartitionWorker
from unit.app.fakes import FakeConsumer, Record, worker, worker_context

A, B = TopicPartition("t", 0), TopicPartition("t", 1)
BOUND = 100


async def never_answers() -> bool:
    return False


@pytest.fixture
async def circuit() -> AsyncIterator[CircuitBreaker]:
    breaker = CircuitBreaker(
        failure_threshold=1, probe=never_answers, probe_backoff=Backoff(60, 1, 60)
    )
    yield breaker
    await breaker.stop()


def setup(
    circuit: CircuitBreaker, batch_records: int = 2_000
) -> tuple[FakeConsumer, dict[TopicPartition, PartitionWorker], FlowControl]:
    ctx = worker_context(**{"batch.buffer_max_records": BOUND, "batch.max_records": batch_records})
    workers = {A: worker(A, ctx), B: worker(B, ctx)}
    consumer = FakeConsumer()
    flow = FlowControl(
        consumer, workers, circuit, ctx.metrics, max_records=500, buffer_max_records=BOUND
    )
    return consumer, workers, flow


def fill(w: PartitionWorker, count: int) -> None:
    w.submit([Record(offset=n) for n in range(count)])


def test_fetch_limit_is_the_smallest_room(circuit: CircuitBreaker) -> None:
    _consumer, workers, flow = setup(circuit)
    assert flow.fetch_limit() == BOUND
    fill(workers[A], 30)
    assert flow.fetch_limit() == BOUND - 30


def test_a_full_buffer_pauses_its_partition_and_resumes_when_drained(
    circuit: CircuitBreaker,
) -> None:
    consumer, workers, flow = setup(circuit)
    fill(workers[A], BOUND * 3 // 4)
    flow.submitted(A, workers[A])
    assert consumer.paused == {A}
    # a paused partition's room does not limit the others' fetches
    assert flow.fetch_limit() == BOUND
    flow.update()
    assert consumer.paused == {A}  # not drained yet
    workers[A].buffer.drop()
    flow.update()
    assert consumer.paused == set()


async def test_an_open_circuit_pauses_every_partition_until_it_closes(
    circuit: CircuitBreaker,
) -> None:
    consumer, workers, flow = setup(circuit)
    fill(workers[A], BOUND)
    flow.submitted(A, workers[A])
    circuit.record_failure()
    assert circuit.state is CircuitState.OPEN
    flow.update()
    assert consumer.paused == {A, B}
    circuit.record_success()
    flow.update()
    assert consumer.paused == {A}  # still full: stays paused for its buffer


async def test_a_partition_resumes_as_soon_as_its_worker_takes_the_batch_that_drains_it(
    circuit: CircuitBreaker,
) -> None:
    consumer, workers, flow = setup(circuit)
    fill(workers[A], BOUND * 3 // 4)
    flow.submitted(A, workers[A])
    flow.batch_taken(A)  # nothing taken yet: still full
    assert consumer.paused == {A}
    assert await workers[A].buffer.take_batch()
    flow.batch_taken(A)  # no `update()` from the fetch loop needed
    assert consumer.paused == set() and flow.paused == set()


async def test_a_partition_stays_paused_while_a_fetch_in_progress_could_overfill_it(
    circuit: CircuitBreaker,
) -> None:
    consumer, workers, flow = setup(circuit, batch_records=45)
    fill(workers[A], BOUND * 3 // 4)
    flow.submitted(A, workers[A])
    assert flow.fetch_limit() == BOUND  # the `getmany` in progress may return a whole buffer
    fill(workers[A], BOUND // 4 - 10)  # fetched before the pause took effect: 90 buffered
    assert await workers[A].buffer.take_batch()  # 45 left: drained enough, but room 55
    flow.batch_taken(A)
    assert consumer.paused == {A}
    flow.update()  # after that `getmany`: resumed by the fetch loop as before
    assert consumer.paused == set()


async def test_a_batch_taken_while_the_circuit_is_open_resumes_nothing(
    circuit: CircuitBreaker,
) -> None:
    consumer, workers, flow = setup(circuit)
    fill(workers[A], BOUND * 3 // 4)
    flow.submitted(A, workers[A])
    circuit.record_failure()
    flow.update()
    assert await workers[A].buffer.take_batch()
    flow.batch_taken(A)
    assert consumer.paused == {A, B}


def test_forget_drops_a_revoked_partition(circuit: CircuitBreaker) -> None:
    _consumer, workers, flow = setup(circuit)
    fill(workers[A], BOUND)
    flow.submitted(A, workers[A])
    flow.forget(A)
    assert flow.paused == set()
