"""Readiness while the DLQ table is down: `/readyz` says why, held letters are counted, and
both recover once the table is back."""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client import CollectorRegistry
from support.fault_proxy import FaultProxy, Mode
from support.pipeline import (
    dlq_rows,
    pipeline_settings,
    prepare_pipeline,
    service_caught_up,
    wait_for,
)
from support.stack_fixtures import TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import plan_events, produce_records
from stream_indexer.observability.http_server import ObservabilityServer
from stream_indexer.observability.metrics import Metrics

HELD = "stream_indexer_dlq_held_letters"


def _via(dsn: str, proxy: FaultProxy) -> str:
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{proxy.address}"))


async def _readyz(port: int) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status, json.loads(await response.text())


async def test_readyz_reports_a_down_dlq_table_and_held_letters_then_recovers(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    unique_name: str,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    plan = plan_events(6, listings=6, seed=41, poison_every=0, delete_ratio=0)
    records = [*plan.records[:3], (b"88", b"{not json"), (None, b"\xff"), *plan.records[3:]]
    metrics = Metrics(CollectorRegistry())
    parts = urlsplit(pg_dsn)
    async with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        settings = pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=opensearch_url,
            pg_dsn=_via(pg_dsn, proxy),
            topic=topic,
            name=unique_name,
            **{"retry.initial_backoff_ms": 50, "retry.max_backoff_ms": 300},
        )
        async with (
            IndexerService(settings, metrics) as service,
            ObservabilityServer("127.0.0.1", 0, metrics.registry, service) as server,
        ):
            await service.assigned.wait()
            assert (await _readyz(server.port))[0] == 200
            await proxy.set_mode(Mode.REFUSE)
            ends = await produce_records(kafka_bootstrap, topic, records)

            async def held() -> bool:
                return (metrics.registry.get_sample_value(HELD) or 0) > 0

            await wait_for(held, within_s=60, what="held letters")
            status, body = await _readyz(server.port)
            assert status == 503, body
            assert "postgres" in body["detail"] and "held" in body["detail"], body
            assert (metrics.registry.get_sample_value(HELD) or 0) in (1, 2)
            assert service.liveness()[0], "an outage of a store is not a reason to restart"

            await proxy.set_mode(Mode.PASS)
            await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="catch-up")
            assert metrics.registry.get_sample_value(HELD) == 0
            assert (await _readyz(server.port))[0] == 200
    assert len(await dlq_rows(pg_dsn)) == 2
