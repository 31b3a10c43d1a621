"""The Grafana dashboard: datasource variable, real metric names, the panels operators need."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .facts import DASHBOARD_FILE, exported_metric_names, metric_tokens


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return doc


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _exprs() -> list[str]:
    exprs = [
        target["expr"]
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in _dashboard()["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_datasource_is_a_template_variable_used_by_every_panel() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels(_dashboard()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_expression_uses_only_exported_metrics() -> None:
    known = exported_metric_names()
    for expr in _exprs():
        tokens = metric_tokens(expr)
        assert tokens <= known, f"{expr}: unknown {tokens - known}"


def test_panels_cover_what_operators_watch() -> None:
    used = set().union(*(metric_tokens(e) for e in _exprs()))
    required = {
        "opensearch_indexing_success_total",  # throughput
        "stream_indexer_items_total",
        "stream_indexer_consumer_lag",  # lag
        "stream_indexer_freshness_seconds_bucket",  # freshness
        "stream_indexer_bulk_duration_seconds_bucket",  # bulk latency percentiles
        "stream_indexer_dlq_writes_total",  # DLQ rate
        "stream_indexer_dlq_open_rows",  # DLQ depth: open rows, not history
        "stream_indexer_dlq_oldest_open_age_seconds",
        "opensearch_indexing_retry_total",  # retries
        "stream_indexer_circuit_state",  # circuit
        "stream_indexer_rebalances_total",  # rebalances
        "stream_indexer_drift_documents",  # drift check (verify)
        "stream_indexer_drift_remaining_documents",
        "stream_indexer_verify_last_run_timestamp_seconds",
        "stream_indexer_reindex_live_holds_total",  # reindex: live traffic first
        "stream_indexer_reindex_live_held_seconds_total",
    }
    assert required <= used, f"no panel for {required - used}"


def test_panel_ids_are_unique_and_uid_is_stable() -> None:
    ids = [panel["id"] for panel in _panels(_dashboard()["panels"])]
    assert len(ids) == len(set(ids))
    assert _dashboard()["uid"] == "stream-indexer"
