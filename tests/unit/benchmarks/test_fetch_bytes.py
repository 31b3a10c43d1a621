"""The zero-cost step's fetch counter: a child with `counting_env` reports the record bytes
of every partition fetch aiokafka parsed, and nothing without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.zero_cost import counting_env, fetched_bytes

_PARSE_TWO_FETCHES = """
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
for offset in range(3):
    builder.append(offset, None, b"1", b"x" * 100, [])
data = bytes(builder.build())
for _ in range(2):
    fetcher.MemoryRecords(data)
print(len(data))
"""


def _child(env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PARSE_TWO_FETCHES],
        env={**os.environ, **env},
        capture_output=True,
        check=True,
    )
    return int(out.stdout)


def test_a_counted_child_reports_every_fetched_byte(tmp_path: Path) -> None:
    out = tmp_path / "fetched.json"
    size = _child(counting_env(out))
    assert fetched_bytes(out) == {"fetched_bytes": 2 * size, "partition_fetches": 2}
    assert not out.exists()  # read once


def test_an_uncounted_child_reports_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fetched.json"
    _child({})
    assert fetched_bytes(out) == {}
