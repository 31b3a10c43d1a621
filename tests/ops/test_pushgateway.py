"""verify's metrics reach a real Pushgateway: its gauges only, replaced by each run's push."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.pushgateway import INSTALL_HINT, Pushgateway, pushgateway_binary

from stream_indexer.cli.verify import PUSH_JOB, publish
from stream_indexer.repair.drift import Finding
from stream_indexer.repair.verify_report import VerifyReport
from stream_indexer.settings import load_settings

from .tools import missing


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Pushgateway]:
    binary = pushgateway_binary()
    if binary is None:
        missing("prometheus-pushgateway", INSTALL_HINT)
    with Pushgateway(tmp_path, binary) as gateway:
        yield gateway


def _value(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name` whose labels include `labels`, from /metrics text."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None


def test_a_run_pushes_its_drift_gauges_under_the_verify_job(pushgateway: Pushgateway) -> None:
    settings = load_settings(
        {"verify.pushgateway_url": pushgateway.url, "opensearch.index": "listings"}
    )
    report = VerifyReport("full", None, repair=False)
    report.found(Finding.MISSING, 1)
    report.found(Finding.MISSING, 2)
    report.found(Finding.EXTRA, 3)
    report.finished_at = 1_700_000_000.0
    publish(settings, report)

    text = pushgateway.metrics()
    job = {"job": PUSH_JOB, "index": "listings"}
    assert _value(text, "stream_indexer_drift_documents", kind="missing", **job) == 2
    assert _value(text, "stream_indexer_drift_documents", kind="extra", **job) == 1
    assert _value(text, "stream_indexer_drift_remaining_documents", **job) == 3
    assert _value(text, "stream_indexer_verify_last_run_timestamp_seconds", **job) == 1.7e9
    # the pipeline's own families stay out of the job's push
    assert f'opensearch_indexing_queue_size{{index="listings",instance="",job="{PUSH_JOB}"' not in (
        text
    )

    clean = VerifyReport("full", None, repair=False)
    clean.finished_at = 1_700_003_600.0
    publish(settings, clean)  # the next run replaces the last one's figures
    text = pushgateway.metrics()
    assert _value(text, "stream_indexer_drift_documents", kind="missing", **job) == 0
    assert _value(text, "stream_indexer_verify_last_run_timestamp_seconds", **job) == 1.7000036e9


def test_an_unreachable_pushgateway_does_not_change_the_verdict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings({"verify.pushgateway_url": "http://127.0.0.1:9"})
    report = VerifyReport("full", None, repair=False)
    publish(settings, report)
    assert report.exit_code == 0
    assert "could not push the verify metrics" in caplog.text
