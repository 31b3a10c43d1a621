"""Reindex pieces that need no server: progress text, mapping file checks, letter filter,
the CLI's exit code for a held lock, status text."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from stream_indexer.cli.reindex import read_mapping
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.errors import ConfigError
from stream_indexer.observability.reindex_metrics import ReindexMetrics
from stream_indexer.opensearch.mapping import index_body
from stream_indexer.reindex.admin import status_text
from stream_indexer.reindex.catchup import catchup_settings, letter_filter
from stream_indexer.reindex.progress import Reporter, eta_seconds, render
from stream_indexer.reindex.state import ReindexRun, lock_id
from stream_indexer.settings import load_settings


def test_eta_and_the_progress_line() -> None:
    assert eta_seconds(250, 1_000, 50.0) == 15.0
    assert eta_seconds(0, 1_000, 0.0) is None
    line = render("backfill", 500, 1_000, 250.0, None)
    assert "500/1000" in line and "250 docs/s" in line and "ETA 0:00:02" in line
    assert "#" * 15 + "." * 15 in line


def test_the_reporter_draws_a_bar_on_a_terminal_and_sets_the_gauges() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    registry = CollectorRegistry()
    ticks = iter(float(n) for n in range(100))
    reporter = Reporter(
        ReindexMetrics(registry), interval_s=5, stream=stream, clock=lambda: next(ticks)
    )
    reporter.set_phase("backfill")
    reporter.rows(0, 100)
    reporter.rows(40, 100)
    reporter.lags(7, 3)
    reporter.close()
    assert "40/100" in stream.getvalue()
    assert registry.get_sample_value("stream_indexer_reindex_rows_done") == 40
    assert registry.get_sample_value("stream_indexer_reindex_catchup_lag") == 7
    assert registry.get_sample_value("stream_indexer_reindex_phase", {"phase": "backfill"}) == 1
    assert registry.get_sample_value("stream_indexer_reindex_phase", {"phase": "done"}) == 0


def test_the_reporter_logs_instead_when_not_on_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    reporter = Reporter(ReindexMetrics(CollectorRegistry()), interval_s=5, stream=stream)
    with caplog.at_level("INFO", logger="stream_indexer.reindex.progress"):
        reporter.set_phase("backfill")
        reporter.rows(10, 100)
    assert stream.getvalue() == ""
    assert any(r.getMessage() == "reindex progress" for r in caplog.records)


def test_a_mapping_file_is_checked_and_named_by_its_flag(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(index_body()))
    assert read_mapping(str(good))["mappings"]["dynamic"] == "strict"
    cases = {
        "missing.json": None,
        "notjson.json": "{",
        "list.json": "[]",
        "nomappings.json": '{"settings": {}}',
        "lacks.json": '{"mappings": {"properties": {"title": {"type": "text"}}}}',
        "aliases.json": json.dumps({**index_body(), "aliases": {"x": {}}}),
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(ConfigError, match="--mapping"):
            read_mapping(str(path))


def _letter(error_class: str) -> DeadLetter:
    return DeadLetter(
        topic="t",
        partition=0,
        offset=1,
        timestamp_ms=None,
        key=b"1",
        value=b"{}",
        headers=(),
        listing_id=1,
        action="index",
        data=None,
        error_class=error_class,
        error_message="x",
        attempts=1,
        consumer_group="g.reindex.1",
        failed_at=datetime.now(UTC),
    )


def test_the_catch_up_group_stores_only_rejections_a_new_mapping_can_make() -> None:
    same, differ = letter_filter(False), letter_filter(True)
    for error_class in ("undecodable", "schema_invalid", "source_row_rejected"):
        assert not same(_letter(error_class)) and not differ(_letter(error_class))
    assert differ(_letter("mapping_rejected"))
    assert not same(_letter("mapping_rejected"))


def test_catch_up_settings_override_the_group_and_never_create_an_index() -> None:
    live = load_settings({"kafka.group_id": "live", "kafka.auto_offset_reset": "latest"})
    copy = catchup_settings(live, "live.reindex.3")
    assert (copy.kafka.group_id, copy.kafka.auto_offset_reset) == ("live.reindex.3", "earliest")
    assert copy.opensearch.create_index is False and copy.metrics.enabled is False
    assert live.kafka.group_id == "live" and live.opensearch.create_index is True


def test_the_catch_up_keeps_two_batch_sized_requests_in_flight_live_pods_keep_theirs() -> None:
    live = load_settings({"opensearch.max_in_flight_bulks": 4, "batch.max_records": 800})
    copy = catchup_settings(live, "live.reindex.3")
    assert copy.opensearch.max_in_flight_bulks == 2
    assert copy.opensearch.bulk_max_docs == 800, "partitions' batches are not combined"
    assert live.opensearch.max_in_flight_bulks == 4
    one = load_settings({"reindex.catchup_in_flight": 1})
    assert catchup_settings(one, "g").opensearch.max_in_flight_bulks == 1


def test_lock_ids_differ_per_alias_and_fit_a_bigint() -> None:
    assert lock_id("a") != lock_id("b")
    assert 0 < lock_id("marketplace_listings") < 2**63


def test_status_text_names_phase_rows_and_lag() -> None:
    run = ReindexRun(
        id=3,
        alias="a",
        old_index="a_v1",
        new_index="a_v2",
        source="postgres",
        phase="backfill",
        rows_done=10,
        rows_total=40,
        docs_per_s=5.0,
        catchup_lag=None,
    )
    data = run.to_json()
    data["eta_s"] = 6
    text = status_text({"alias": "a", "run": data})
    assert "run 3 backfill" in text and "10/40" in text and "ETA 6 s" in text
    assert status_text({"alias": "a", "run": None}) == "a: no reindex run"
