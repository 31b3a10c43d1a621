"""Fixtures for the operations tests: repository paths and the real tools (skipped when missing,
failing in CI: see tools.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .tools import missing

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing("promtool", "Debian: apt-get install --no-install-recommends prometheus")
    return path
