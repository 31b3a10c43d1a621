"""The verify report: exit code with and without repair, bounded examples, gauges."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stream_indexer.observability.metrics import Metrics
from stream_indexer.repair.drift import Finding
from stream_indexer.repair.verify_report import EXAMPLES, VerifyReport


def test_drift_exits_1_and_a_full_repair_exits_0() -> None:
    report = VerifyReport("full", None, repair=False)
    assert report.exit_code == 0
    report.found(Finding.MISSING, 1)
    report.found(Finding.AHEAD, 2)
    report.found(Finding.INVALID_SOURCE_ROW, 3)
    assert (report.drift, report.remaining, report.exit_code) == (1, 1, 1)

    repaired = VerifyReport("full", None, repair=True)
    repaired.found(Finding.EXTRA, 1)
    repaired.found(Finding.VERSION_BEHIND, 2)
    repaired.repaired("repaired", 1)
    repaired.repaired("newer_meanwhile", 2)
    assert (repaired.drift, repaired.remaining, repaired.exit_code) == (2, 0, 0)
    repaired.repaired("failed", 3)
    assert repaired.exit_code == 1
    repaired.still_drifting.add(1)
    assert repaired.remaining == 2


def test_examples_are_bounded_counts_are_not() -> None:
    report = VerifyReport("sample", 100, repair=False)
    for i in range(1, 1001):
        report.found(Finding.EXTRA, i)
    data = report.to_json()
    assert data["drift"]["extra"] == {"count": 1000, "examples": list(range(1, EXAMPLES + 1))}
    assert any("extra: 1000 (e.g. 1, 2" in line for line in report.lines())


def test_export_sets_every_verify_gauge() -> None:
    metrics = Metrics(CollectorRegistry())
    report = VerifyReport("full", None, repair=True)
    report.found(Finding.MISSING, 1)
    report.repaired("repaired", 1)
    report.checked_rows, report.checked_docs = 10, 9
    report.duration_s, report.finished_at = 1.5, 1_700_000_000.0
    report.export(metrics)
    value = metrics.registry.get_sample_value
    assert value("stream_indexer_drift_documents", {"kind": "missing"}) == 1
    assert value("stream_indexer_drift_documents", {"kind": "extra"}) == 0
    assert value("stream_indexer_drift_remaining_documents") == 0
    assert value("stream_indexer_drift_repaired_documents", {"result": "repaired"}) == 1
    assert value("stream_indexer_drift_checked_documents", {"side": "source"}) == 10
    assert value("stream_indexer_verify_last_run_timestamp_seconds") == 1_700_000_000.0
    assert value("stream_indexer_verify_duration_seconds") == 1.5
