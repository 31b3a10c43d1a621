"""A real Prometheus scrapes ObservabilityServer and evaluates the shipped rules and dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from stream_indexer.observability.http_server import ObservabilityServer
from stream_indexer.observability.metrics import Metrics

from .facts import DASHBOARD_FILE, RULES_FILE
from .prometheus_server import PrometheusServer, prometheus_binary
from .tools import missing

if prometheus_binary() is None:
    missing("prometheus", "Debian: apt-get install --no-install-recommends prometheus")


class _Healthy:
    def liveness(self) -> tuple[bool, str]:
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"


def _value(result: list[dict[str, Any]]) -> float:
    (sample,) = result
    return float(sample["value"][1])


async def test_series_arrive_and_rules_evaluate(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.success.inc(5)
    metrics.consumer_lag.labels(topic="listings.changes", partition="0").set(42)
    metrics.commits.inc(0)
    metrics.circuit_state.set(0)
    async with (
        ObservabilityServer("127.0.0.1", 0, metrics.registry, _Healthy()) as server,
        PrometheusServer(tmp_path, [f"127.0.0.1:{server.port}"], [RULES_FILE]) as prom,
    ):
        up = await prom.wait_for('up{job="stream-indexer"}')
        assert _value(up) == 1.0
        success = await prom.wait_for('opensearch_indexing_success_total{job="stream-indexer"}')
        assert _value(success) == 5.0
        lag = await prom.wait_for("stream_indexer_consumer_lag")
        assert lag[0]["metric"]["partition"] == "0" and _value(lag) == 42.0

        # Lag with no commits: the stall alert's expression turns true and the alert pends.
        stalled = next(
            rule
            for group in (await prom.api("rules"))["groups"]
            for rule in group["rules"]
            if rule["name"] == "StreamIndexerStalledConsumer"
        )
        result = await prom.wait_for(stalled["query"])
        assert result[0]["metric"]["instance"] == f"127.0.0.1:{server.port}"

        # Every shipped rule loaded and evaluates without error.
        rules = await prom.evaluated_rules()
        assert len(rules) >= 15
        assert all(rule["health"] == "ok" for rule in rules), rules
        alert = await prom.wait_for_alert("StreamIndexerStalledConsumer")
        assert alert["state"] == "pending"  # `for: 5m` has not passed
        assert alert["labels"]["severity"] == "critical"


async def test_dashboard_queries_run_on_real_prometheus(tmp_path: Path) -> None:
    """Each panel's PromQL parses and executes (Grafana's variables substituted)."""
    metrics = Metrics(CollectorRegistry())
    metrics.freshness.observe(0.4)
    async with (
        ObservabilityServer("127.0.0.1", 0, metrics.registry, _Healthy()) as server,
        PrometheusServer(tmp_path, [f"127.0.0.1:{server.port}"]) as prom,
    ):
        await prom.wait_for("stream_indexer_freshness_seconds_count")
        dashboard = json.loads(DASHBOARD_FILE.read_text())
        exprs = [
            target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
        ]
        assert exprs
        for expr in exprs:
            concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
            await prom.query(concrete)  # raises PrometheusError on a bad expression
