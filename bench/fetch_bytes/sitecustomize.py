"""Benchmark instrumentation: the bytes a consumer process received in fetch responses.

The zero-cost step puts this directory on a consumer child's `PYTHONPATH` with
`BENCH_FETCH_BYTES_OUT` set to a file; Python imports this module at start-up, which counts
the record bytes of every partition in every fetch response aiokafka parses, and writes
`{"fetched_bytes": ..., "partition_fetches": ...}` to that file at exit. A consumer that
fetches the same records twice (aiokafka refetches what a paused partition dropped) shows
it here; one that never pauses receives the topic once. One Python call per partition per
fetch response: nothing next to the records' own cost.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any


def _count_fetched_bytes(out: Path) -> None:
    from aiokafka.consumer import fetcher

    memory_records = fetcher.MemoryRecords
    counts = {"fetched_bytes": 0, "partition_fetches": 0}

    def counting(data: bytes) -> Any:
        records = memory_records(data)
        counts["fetched_bytes"] += records.size_in_bytes()
        counts["partition_fetches"] += 1
        return records

    fetcher.MemoryRecords = counting
    atexit.register(lambda: out.write_text(json.dumps(counts)))


if os.environ.get("BENCH_FETCH_BYTES_OUT"):
    _count_fetched_bytes(Path(os.environ["BENCH_FETCH_BYTES_OUT"]))
