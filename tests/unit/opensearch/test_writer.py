"""BulkWriter's retry policy against a scripted fake sink: what is re-sent, what becomes
poison, and that a down sink never does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.errors import MappingRejectedError, RetriesExhaustedError, SinkUnavailableError
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.bulk import ItemOutcome, ItemResult, PendingWrite
from stream_indexer.opensearch.circuit import CircuitBreaker, CircuitState
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.settings import RetrySettings

NO_WAIT = Backoff(0.0, 2.0, 0.0)
OK = ItemResult(ItemOutcome.WRITTEN, 201)
STALE = ItemResult(ItemOutcome.STALE, 409, "version_conflict_engine_exception")
BUSY = ItemResult(ItemOutcome.RETRY, 429, "es_rejected_execution_exception")
ODD = ItemResult(ItemOutcome.RECORD_ERROR, 404, "strange_exception", "who knows")
BAD = ItemResult(ItemOutcome.POISON, 400, "mapper_parsing_exception", "bad price")

#: answer for one bulk request: an exception to raise, or a function of the listing id
Answer = SinkUnavailableError | Callable[[int], ItemResult]


class ScriptedSink:
    """Stands in for the BulkAssembler: answers each `send` from a script, records each call."""

    def __init__(self, *answers: Answer, default: Answer = lambda _id: OK) -> None:
        self.answers = list(answers)
        self.default = default
        self.sent: list[list[int]] = []

    async def send(self, writes: list[PendingWrite]) -> list[ItemResult]:
        self.sent.append([w.listing_id for w in writes])
        answer = self.answers.pop(0) if self.answers else self.default
        if isinstance(answer, SinkUnavailableError):
            raise answer
        return [answer(w.listing_id) for w in writes]


def make_writer(
    sink: ScriptedSink,
    *,
    max_attempts: int = 3,
    threshold: int = 3,
    probe: Callable[[], Any] | None = None,
) -> tuple[BulkWriter, CircuitBreaker, Metrics]:
    metrics = Metrics(CollectorRegistry())

    async def answers() -> bool:
        return True

    circuit = CircuitBreaker(
        failure_threshold=threshold, probe=probe or answers, probe_backoff=NO_WAIT
    )
    writer = BulkWriter(
        assembler=sink,  # type: ignore[arg-type]
        circuit=circuit,
        policy=RetryPolicy.forever(NO_WAIT),
        metrics=metrics,
        retry=RetrySettings(max_attempts=max_attempts),
    )
    return writer, circuit, metrics


def writes(*ids: int) -> list[PendingWrite]:
    return [PendingWrite(listing_id=i, version=1, document={"id": i}) for i in ids]


async def settle(writer: BulkWriter, *ids: int) -> Any:
    """`writer.write` bounded in time: a policy bug that loops must fail, not hang."""
    return await asyncio.wait_for(writer.write(writes(*ids)), 5)


def retries(metrics: Metrics, label: str) -> float:
    value = metrics.registry.get_sample_value(
        "opensearch_indexing_retry_total", {"error_class": label}
    )
    return value or 0.0


async def test_every_item_is_filed_as_written_stale_or_poison() -> None:
    answers = {1: OK, 2: STALE, 3: BAD}
    writer, _, _ = make_writer(ScriptedSink(answers.__getitem__))
    outcome = await settle(writer, 1, 2, 3)
    assert [w.listing_id for w in outcome.written] == [1]
    assert [w.listing_id for w in outcome.stale] == [2]
    [(write, error)] = outcome.poison
    assert write.listing_id == 3 and isinstance(error, MappingRejectedError)
    assert "mapper_parsing_exception" in str(error)


async def test_only_failed_items_are_sent_again() -> None:
    sink = ScriptedSink(lambda i: BUSY if i == 2 else OK)
    writer, _, metrics = make_writer(sink)
    outcome = await settle(writer, 1, 2, 3)
    assert sink.sent == [[1, 2, 3], [2]]
    assert sorted(w.listing_id for w in outcome.written) == [1, 2, 3]
    assert retries(metrics, "es_rejected_execution_exception") == 1


async def test_overload_answers_retry_past_the_attempt_budget() -> None:
    sink = ScriptedSink(*[lambda _i: BUSY] * 6)
    writer, _, _ = make_writer(sink, max_attempts=2)
    outcome = await settle(writer, 7)
    assert len(sink.sent) == 7
    assert [w.listing_id for w in outcome.written] == [7] and not outcome.poison


async def test_record_errors_become_poison_when_the_budget_is_spent() -> None:
    sink = ScriptedSink(default=lambda _i: ODD)
    writer, _, _ = make_writer(sink, max_attempts=3)
    outcome = await settle(writer, 9)
    assert len(sink.sent) == 3
    [(write, error)] = outcome.poison
    assert write.attempts == 3 and isinstance(error, RetriesExhaustedError)
    assert "strange_exception: who knows" in str(error)


async def test_whole_request_failures_retry_and_never_make_poison() -> None:
    down = SinkUnavailableError("connection refused")
    sink = ScriptedSink(down, down)
    writer, circuit, metrics = make_writer(sink, max_attempts=1, threshold=5)
    outcome = await settle(writer, 1, 2)
    assert len(outcome.written) == 2 and not outcome.poison
    assert retries(metrics, "sink_unavailable") == 4  # per item, per failed request
    assert circuit.state is CircuitState.CLOSED and circuit.consecutive_failures == 0


async def test_a_down_sink_opens_the_circuit_and_the_writer_waits_for_the_probe() -> None:
    down = SinkUnavailableError("503")
    probed = asyncio.Event()

    async def probe() -> bool:
        probed.set()
        return True

    sink = ScriptedSink(down, down)
    writer, circuit, _ = make_writer(sink, threshold=2, probe=probe)
    outcome = await settle(writer, 4)
    assert probed.is_set()
    assert circuit.opened_total == 1 and circuit.state is CircuitState.CLOSED
    assert [w.listing_id for w in outcome.written] == [4]
    await circuit.stop()


@pytest.mark.parametrize("answer", [OK, STALE])
async def test_nothing_is_retried_when_the_first_answer_settles_it(answer: ItemResult) -> None:
    sink = ScriptedSink(lambda _i: answer)
    writer, _, metrics = make_writer(sink)
    await settle(writer, 1)
    assert len(sink.sent) == 1
    assert (
        metrics.registry.get_sample_value(
            "stream_indexer_bulk_item_errors_total",
            {"error_type": "version_conflict_engine_exception"},
        )
        is None
    )
