"""Fixtures for the TLS and authentication tests: one throwaway PKI and one event-loop thread
for the TLS endpoints, per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.tls_endpoints import Pki, ThreadLoop


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def tls_loop() -> Iterator[ThreadLoop]:
    thread = ThreadLoop()
    yield thread
    thread.close()
