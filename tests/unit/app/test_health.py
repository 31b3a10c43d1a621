"""Liveness and readiness decisions of the service (the stall detector)."""

from __future__ import annotations

import time

from stream_indexer.app.service import IndexerService
from stream_indexer.opensearch.circuit import CircuitState
from stream_indexer.settings import load_settings


def _service(stall_timeout_s: float = 60.0) -> IndexerService:
    return IndexerService(load_settings({"metrics.stall_timeout_s": stall_timeout_s}))


def test_behind_with_no_commit_for_the_stall_timeout_fails_liveness() -> None:
    service = _service(stall_timeout_s=60)
    long_ago = time.monotonic() - 120
    service.last_commit = long_ago
    service._caught_up_at = long_ago
    alive, detail = service.liveness()
    assert not alive and "stalled" in detail


def test_idle_but_caught_up_is_alive() -> None:
    service = _service(stall_timeout_s=60)
    service.last_commit = time.monotonic() - 3600  # nothing to commit for an hour
    service._caught_up_at = time.monotonic()  # ... because there is no lag
    assert service.liveness()[0]


def test_an_open_circuit_is_not_a_stall_but_is_not_ready() -> None:
    service = _service(stall_timeout_s=60)
    long_ago = time.monotonic() - 120
    service.last_commit = long_ago
    service._caught_up_at = long_ago
    service.circuit._set(CircuitState.OPEN)
    assert service.liveness()[0]
    ready, detail = service.readiness()
    assert not ready and "open" in detail
