"""Core: a fix to aiokafka's consumer, so the fetches it discards are freed at once.

aiokafka (0.14) throws away the fetched records of a partition that was paused before they
were taken, and fetches them again on resume (Kafka's Java client stopped doing that with
KAFKA-7548). What it throws away is a `PartitionRecords` whose record iterator never
finished: a generator whose frame references its owner, so a reference cycle that holds
the fetched bytes (up to `KAFKA__MAX_PARTITION_FETCH_BYTES`, plus a decompressed batch)
until the cycle collector finds it. Flow control pauses full partitions all the time under
a backlog; with the collector kept off each batch (`cycle_collector`), these cycles raised
the indexer's peak RSS by half.

`free_discarded_fetches()` wraps `FetchResult.check_assignment`, where the records of a
paused (or moved) partition are dropped, to drop their iterator as well: reference counting
then frees the bytes at once. If aiokafka's internals are not what this expects, it
changes nothing and says so (a unit test pins the behaviour on the pinned aiokafka).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiokafka.consumer import fetcher

log = logging.getLogger(__name__)

_APPLIED = "_stream_indexer_frees_discarded_fetches"


def free_discarded_fetches() -> bool:
    """Apply the fix (idempotent); False when aiokafka's fetcher is not as expected."""
    fetch_result: Any = getattr(fetcher, "FetchResult", None)
    check = getattr(fetch_result, "check_assignment", None)
    if check is None or not hasattr(fetcher, "PartitionRecords"):
        log.warning("aiokafka's FetchResult has changed; discarded fetches are left as they are")
        return False
    if getattr(check, _APPLIED, False):
        return True

    @functools.wraps(check)
    def check_assignment(self: Any, tp: Any) -> bool:
        records = self._partition_records
        returned: bool = check(self, tp)
        if not returned and records is not None and self._partition_records is None:
            # the generator's frame holds `records`: without it, nothing holds them
            records._records_iterator = None
        return returned

    setattr(check_assignment, _APPLIED, True)
    fetch_result.check_assignment = check_assignment
    return True


__all__ = ["free_discarded_fetches"]
