"""Core: two fixes to aiokafka's consumer, for the records it fetched for a paused partition.

aiokafka (0.14) throws away the fetched records of a partition that was paused before they
were all taken, and fetches them again on resume. Flow control pauses a partition whenever
its buffer fills, usually a few records into a fetch: measured on a backlog, the indexer
made the broker send 2.9 times the topic's bytes. Kafka's Java client stopped doing that
with KAFKA-7548 (it keeps a paused partition's fetched data and returns it on resume).

- `keep_paused_fetches()` does the same: a paused partition's fetch result is kept (the
  fetcher fetches no more for it meanwhile, so memory stays one fetch per partition, as
  without a pause), and `resume` wakes a `getmany` that is waiting, since resuming brings
  no fetch response that would. aiokafka sends a broker no fetch at all while a partition
  it leads holds records younger than `prefetch_backoff` (0.1 s) that nobody took; a kept
  result is exempt, or every pause would hold the other partitions' fetches.
- `free_discarded_fetches()`: what aiokafka still throws away (a partition that was moved,
  or sought elsewhere) is a `PartitionRecords` whose record iterator never finished, a
  generator whose frame references its owner: a reference cycle that holds the fetched
  bytes until the cycle collector finds it (with the collector kept off each batch,
  `cycle_collector`, they raised peak RSS by half). Its iterator is dropped with it.

Both wrap private methods (`FetchResult.check_assignment` and `calculate_backoff`, the
fetcher's waiters). If aiokafka's internals are not what they expect they change nothing
and say so; unit tests pin the behaviour on the pinned aiokafka.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer import fetcher

log = logging.getLogger(__name__)

_FREES = "_stream_indexer_frees_discarded_fetches"
_KEEPS = "_stream_indexer_keeps_paused_fetches"


def _check_assignment() -> Any:
    fetch_result: Any = getattr(fetcher, "FetchResult", None)
    check = getattr(fetch_result, "check_assignment", None)
    if check is None or not hasattr(fetcher, "PartitionRecords"):
        return None
    return check


def _paused_state(result: Any) -> Any:
    """The subscription state of a fetch result's partition while the result holds records
    and the partition is assigned and paused; None otherwise."""
    assignment = result._assignment
    if result._partition_records is None or not assignment.active:
        return None
    state = assignment.state_value(result._topic_partition)
    return state if state.paused else None


def free_discarded_fetches() -> bool:
    """Apply the fix (idempotent); False when aiokafka's fetcher is not as expected."""
    check = _check_assignment()
    if check is None:
        log.warning("aiokafka's FetchResult has changed; discarded fetches are left as they are")
        return False
    if getattr(check, _FREES, False):
        return True

    @functools.wraps(check)
    def check_assignment(self: Any, tp: Any) -> bool:
        records = self._partition_records
        returned: bool = check(self, tp)
        if not returned and records is not None and self._partition_records is None:
            # the generator's frame holds `records`: without it, nothing holds them
            records._records_iterator = None
        return returned

    setattr(check_assignment, _FREES, True)  # `functools.wraps` carries inner marks outward
    fetcher.FetchResult.check_assignment = check_assignment
    return True


def keep_paused_fetches() -> bool:
    """Apply the fix (idempotent); False when aiokafka's consumer is not as expected."""
    check = _check_assignment()
    backoff = getattr(getattr(fetcher, "FetchResult", None), "calculate_backoff", None)
    resume = getattr(AIOKafkaConsumer, "resume", None)
    if check is None or backoff is None or resume is None:
        log.warning("aiokafka's consumer has changed; a paused partition's fetch is refetched")
        return False
    if getattr(check, _KEEPS, False):
        return True

    @functools.wraps(check)
    def check_assignment(self: Any, tp: Any) -> bool:
        state = _paused_state(self)
        if state is not None and state.position == self._partition_records.next_fetch_offset:
            return False  # not now; kept whole for when the partition resumes
        returned: bool = check(self, tp)
        return returned

    @functools.wraps(backoff)
    def calculate_backoff(self: Any) -> float:
        if _paused_state(self) is not None:
            return 0  # kept for a resume: no reason to hold the broker's other fetches
        wait: float = backoff(self)
        return wait

    @functools.wraps(resume)
    def resume_and_wake(self: Any, *partitions: Any) -> None:
        resume(self, *partitions)
        # a `getmany` waiting meanwhile looks again, and finds what was kept
        for waiter in list(getattr(getattr(self, "_fetcher", None), "_fetch_waiters", ())):
            if not waiter.done():
                waiter.set_result(None)

    setattr(check_assignment, _KEEPS, True)
    fetcher.FetchResult.check_assignment = check_assignment
    fetcher.FetchResult.calculate_backoff = calculate_backoff
    AIOKafkaConsumer.resume = resume_and_wake
    return True


__all__ = ["free_discarded_fetches", "keep_paused_fetches"]
