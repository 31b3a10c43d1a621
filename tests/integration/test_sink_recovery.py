"""Recovery after a blackholed sink heals follows the sink, not the request timeout."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry
from support.fault_proxy import FaultProxy, Mode
from support.pipeline import (
    assert_index_matches,
    dlq_rows,
    pipeline_settings,
    prepare_pipeline,
    service_caught_up,
    wait_for,
)
from support.stack_fixtures import TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import plan_events, produce_records
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.circuit import CircuitState

REQUEST_TIMEOUT_S = 30.0


async def test_catch_up_after_a_blackhole_heals_comes_well_before_the_request_timeout(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    unique_name: str,
) -> None:
    """Blackhole (connections accepted, never answered) while events flow; the circuit opens
    once a bulk times out. A probe and a bulk are stuck in the blackhole when the sink heals,
    and the healed sink forgets the stuck connections (as a restarted node or a reset NAT
    does): only a probe with its own short timeout notices the sink is back, and the stuck
    bulk must be re-sent then rather than hold its slot until its request timeout."""
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=3)
    plan = plan_events(3_000, listings=1_000, seed=35, poison_every=0)
    half = len(plan.records) // 2
    async with FaultProxy(*_host_port(opensearch_url)) as proxy:
        settings = pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=proxy.url(),
            pg_dsn=pg_dsn,
            topic=topic,
            name=unique_name,
            **{
                "opensearch.request_timeout_s": REQUEST_TIMEOUT_S,
                "retry.circuit_failure_threshold": 1,
                "batch.max_records": 100,
                "opensearch.max_in_flight_bulks": 1,
                "kafka.commit_interval_ms": 50,
            },
        )
        await produce_records(kafka_bootstrap, topic, plan.records[:half])
        async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
            probe_held = _watch_probes(service, proxy)
            await wait_for(lambda: _any(service), within_s=60, what="a first commit", step=0.05)
            await proxy.set_mode(Mode.BLACKHOLE)
            ends = await produce_records(kafka_bootstrap, topic, plan.records[half:])
            # the bulk in flight times out, the circuit opens, a probe goes into the hole
            probe_held.clear()
            await asyncio.wait_for(probe_held.wait(), REQUEST_TIMEOUT_S * 3)
            assert service.circuit.state is CircuitState.OPEN
            assert not await service_caught_up(service, ends), "blackhole was not mid-stream"
            await proxy.set_mode(Mode.PASS, drop_stalled=True)
            healed = time.monotonic()
            await wait_for(
                lambda: service_caught_up(service, ends),
                within_s=REQUEST_TIMEOUT_S * 2,
                what="catch-up after the sink healed",
                step=0.05,
            )
            recovery_s = time.monotonic() - healed
        print(f"caught up {recovery_s:.1f} s after the blackhole healed")
        assert recovery_s < REQUEST_TIMEOUT_S / 2, (
            f"caught up {recovery_s:.1f} s after the sink healed: recovery waited for a "
            f"request timeout ({REQUEST_TIMEOUT_S:.0f} s) instead of following the sink"
        )
    assert await dlq_rows(pg_dsn) == [], "valid events were dead-lettered during the outage"
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


def _watch_probes(service: IndexerService, proxy: FaultProxy) -> asyncio.Event:
    """An event set once a probe of the sink has its connection held by the proxy."""
    held = asyncio.Event()
    probe = service.circuit._probe

    async def watched() -> bool:
        accepted = proxy.wait_for_connection_attempt()
        accepted.add_done_callback(lambda future: future.cancelled() or held.set())
        return await probe()

    service.circuit._probe = watched
    return held


async def _any(service: IndexerService) -> bool:
    return bool(service.committed_offsets())


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
    return host, int(port)
