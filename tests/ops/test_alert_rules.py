"""The alert rules: valid for promtool, unit-tested, documented, built from real metric names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .facts import (
    REPO,
    RULES_FILE,
    RULES_TEST_FILE,
    exported_metric_names,
    metric_tokens,
    runbook_anchors,
)

EXPECTED_ALERTS = {
    "StreamIndexerDown",
    "StreamIndexerAbsent",
    "StreamIndexerDlqGrowing",
    "StreamIndexerQueueSaturated",
    "StreamIndexerHighFailureRate",
    "StreamIndexerConsumerLagGrowing",
    "StreamIndexerFreshnessHigh",
    "StreamIndexerStalledConsumer",
    "StreamIndexerCircuitOpen",
    "StreamIndexerDlqStoreFailing",
    "StreamIndexerDlqOldEntry",
    "StreamIndexerDriftDetected",
    "StreamIndexerVerifyNotRun",
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, timeout=120)


def test_promtool_check_rules(promtool: str) -> None:
    result = _run([promtool, "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules(promtool: str) -> None:
    result = _run([promtool, "test", "rules", RULES_TEST_FILE.name], cwd=RULES_TEST_FILE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_the_issue_asks_for_exists() -> None:
    assert set(_alerts()) == EXPECTED_ALERTS


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    doc = yaml.safe_load(RULES_TEST_FILE.read_text(encoding="utf-8"))
    firing: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert firing == EXPECTED_ALERTS, f"never seen firing: {EXPECTED_ALERTS - firing}"
    assert silent == EXPECTED_ALERTS, f"never seen silent: {EXPECTED_ALERTS - silent}"
    rule_files = [(RULES_TEST_FILE.parent / f).resolve() for f in doc["rule_files"]]
    assert rule_files == [RULES_FILE.resolve()]


def test_alerts_have_severity_summary_and_a_runbook_section() -> None:
    anchors = runbook_anchors()
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        url = annotations["runbook_url"]
        assert url == f"docs/runbook.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/runbook.md has no section for {name}"


def test_rule_expressions_use_only_exported_metrics() -> None:
    known = exported_metric_names()
    for rule in _rules():
        unknown = metric_tokens(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown {unknown}"


def test_compose_prometheus_config_loads_the_chart_rules(promtool: str, tmp_path: Path) -> None:
    """`promtool check config` on deploy/prometheus/prometheus.yml with the rules mounted."""
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    shutil.copy(RULES_FILE, rules_dir / "stream-indexer.yml")
    config["rule_files"] = [str(rules_dir / "*.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout
