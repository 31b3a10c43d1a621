"""A running indexer, scraped by a real Prometheus and checked by promtool."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
from ops.facts import RULES_FILE
from ops.prometheus_server import PrometheusServer, prometheus_binary
from ops.tools import missing
from prometheus_client import CollectorRegistry
from support.pipeline import prepare_pipeline, service_caught_up, wait_for
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import plan_events, produce_records
from stream_indexer.observability.http_server import ObservabilityServer
from stream_indexer.observability.metrics import Metrics

if prometheus_binary() is None or shutil.which("promtool") is None:
    missing("prometheus and promtool", "Debian: apt-get install --no-install-recommends prometheus")


async def test_prometheus_scrapes_a_running_indexer_and_promtool_accepts_its_metrics(
    kafka_bootstrap: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    tmp_path: Path,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=3)
    settings = settings_for(topic)
    plan = plan_events(300, listings=100, seed=9, poison_every=100)
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    metrics = Metrics(CollectorRegistry())
    service = IndexerService(settings, metrics)
    async with (
        ObservabilityServer("127.0.0.1", 0, metrics.registry, service) as http,
        service,
    ):
        await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="catch-up")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{http.port}/metrics") as response:
                scrape = await response.read()
            async with session.get(f"http://127.0.0.1:{http.port}/readyz") as response:
                assert response.status == 200
        checked = await asyncio.create_subprocess_exec(
            "promtool",
            "check",
            "metrics",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await checked.communicate(scrape)
        assert checked.returncode == 0, output.decode()

        async with PrometheusServer(tmp_path, [f"127.0.0.1:{http.port}"], [RULES_FILE]) as prom:
            finished = len(plan.records) - plan.poison
            success = await prom.wait_for(
                'opensearch_indexing_success_total{job="stream-indexer"}',
                lambda result: bool(result) and float(result[0]["value"][1]) == finished,
            )
            assert success
            lag = await prom.wait_for(
                "stream_indexer_consumer_lag", lambda result: len(result) == 3
            )
            assert {sample["metric"]["partition"] for sample in lag} == {"0", "1", "2"}
            assert all(float(sample["value"][1]) == 0 for sample in lag)
            failures = await prom.wait_for(
                'sum(opensearch_indexing_failure_total{job="stream-indexer"})'
            )
            assert float(failures[0]["value"][1]) == plan.poison
            rules = await prom.evaluated_rules()
            assert rules and all(rule["health"] == "ok" for rule in rules), rules
            stalled = next(r for r in rules if r["name"] == "StreamIndexerStalledConsumer")
            assert stalled["state"] == "inactive", "a caught-up indexer must not look stalled"
