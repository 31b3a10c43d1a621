"""verify's progress off a terminal: a structured log line every few seconds, not per page."""

from __future__ import annotations

import logging

import pytest

from stream_indexer.cli import verify as verify_cli


def test_off_a_terminal_progress_is_a_periodic_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream_indexer.verify")
    progress = verify_cli.VerifyProgress()
    progress.start(100)  # stderr is captured, not a terminal: no bar
    progress.update(10, 10)
    assert not caplog.records  # within the interval: nothing yet
    monkeypatch.setattr(verify_cli, "LOG_EVERY_S", 0.0)
    progress.update(40, 38)
    (record,) = caplog.records
    assert record.getMessage() == "verify progress: 50/100 source rows, 48 index documents"
    assert record.source_rows == 50 and record.source_rows_total == 100  # type: ignore[attr-defined]
    assert record.index_documents == 48  # type: ignore[attr-defined]
    progress.close()
