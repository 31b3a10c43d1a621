"""The validating per-partition baseline writes what the indexer writes for each valid event,
and skips what the contract refuses (it is only a fair baseline if it does the same job)."""

from __future__ import annotations

import os
import resource
from concurrent.futures import ProcessPoolExecutor

import orjson

from bench.partition_baseline import validated_bulk_body
from bench.procstat import read_proc
from bench.workload import make_plan
from stream_indexer.event_dicts import SPARSE_EVENT_DICT_VALIDATOR
from stream_indexer.opensearch.bulk import build_body
from stream_indexer.pipeline.documents import pending_writes_of_dicts

AT = "2026-11-30T00:00:00+00:00"


def test_its_body_is_the_indexers_body_for_the_valid_events() -> None:
    plan = make_plan(400, listings=50, seed=5, poison_every=20)
    values = [record[1] for record in plan.records]
    body, items, invalid = validated_bulk_body(values, AT)

    valid = []
    for value in values:
        try:
            valid.append((SPARSE_EVENT_DICT_VALIDATOR.validate_json(value), None))
        except ValueError:
            continue
    writes, refused = pending_writes_of_dicts(valid, {}, AT)
    assert not refused
    assert invalid == len(values) - len(valid) > 0
    assert items == len(writes) == len(valid)
    ours = [orjson.loads(line) for line in body.splitlines()]
    theirs = [orjson.loads(line) for line in build_body(writes).splitlines()]
    assert ours == theirs


def test_a_batch_with_nothing_valid_has_no_items() -> None:
    body, items, invalid = validated_bulk_body([None, b"{", b"[]"], AT)
    assert (items, invalid) == (0, 3)
    assert body.strip() == b""


def test_a_pool_worker_makes_the_same_body() -> None:
    """The pooled baseline hands each batch to a worker process: arguments and answer must
    cross the process boundary unchanged."""
    plan = make_plan(200, listings=20, seed=6, poison_every=20)
    values = [record[1] for record in plan.records]
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(validated_bulk_body, values, AT).result() == validated_bulk_body(
            values, AT
        )


def test_a_live_process_cpu_is_read_from_proc() -> None:
    """The pool's workers are alive while measured, so rusage cannot see their CPU yet."""
    before = read_proc(os.getpid())[0]
    sum(range(3_000_000))  # burn some CPU in this process
    usage = resource.getrusage(resource.RUSAGE_SELF)
    after = read_proc(os.getpid())[0]
    assert after > before
    assert abs(after - (usage.ru_utime + usage.ru_stime)) < 0.1
