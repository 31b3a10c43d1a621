"""Commits: each partition's watermark once it moved, nothing past a batch in flight, lag
from the high-water mark, and a failed commit that is simply tried again."""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from stream_indexer.app.committer import Committer
from stream_indexer.pipeline.worker import PartitionWorker
from unit.app.fakes import FakeConsumer, worker, worker_context

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def setup() -> tuple[FakeConsumer, dict[TopicPartition, PartitionWorker], Committer, list[int]]:
    ctx = worker_context()
    consumer = FakeConsumer()
    calls: list[int] = []
    committer = Committer(consumer, ctx.metrics, on_commit=lambda: calls.append(1))  # type: ignore[arg-type]
    return consumer, {A: worker(A, ctx), B: worker(B, ctx)}, committer, calls


def finish(w: PartitionWorker, first: int, last: int) -> int:
    token = w.tracker.begin(first, last, time.monotonic())
    w.tracker.complete(token)
    return token


async def test_commits_the_watermark_of_each_partition_that_moved() -> None:
    consumer, workers, committer, calls = setup()
    finish(workers[A], 0, 9)
    await committer.commit(workers)
    assert consumer.commits == [{A: 10}]
    assert committer.committed == {A: 10} and calls == [1]
    await committer.commit(workers)  # nothing moved: no request
    assert len(consumer.commits) == 1


async def test_never_past_a_batch_still_in_flight() -> None:
    consumer, workers, committer, _ = setup()
    tracker = workers[A].tracker
    tracker.begin(0, 4, time.monotonic())  # in flight
    finish(workers[A], 5, 9)
    await committer.commit(workers)
    assert consumer.commits == []


async def test_a_failed_commit_is_tried_again_next_round() -> None:
    consumer, workers, committer, calls = setup()
    finish(workers[A], 0, 4)
    consumer.fail_commits = True
    await committer.commit(workers)
    assert committer.committed == {} and calls == []
    consumer.fail_commits = False
    await committer.commit(workers)
    assert consumer.commits == [{A: 5}]


async def test_lag_is_highwater_minus_committed_and_load_reads_the_group() -> None:
    consumer, workers, committer, _ = setup()
    consumer.group_offsets = {A: 7}
    consumer.highwaters = {A: 10, B: 3}
    await committer.load([A, B])
    assert committer.committed == {A: 7}
    assert committer.report_lag(workers) is True
    consumer.highwaters = {A: 7}
    assert committer.report_lag(workers) is False


async def test_forget_drops_a_revoked_partition() -> None:
    _consumer, workers, committer, _ = setup()
    finish(workers[A], 0, 0)
    await committer.commit(workers)
    committer.forget(A)
    assert committer.committed == {}
