"""Failure handling on the real stack: sink outages, mixed bulk answers, DLQ store outages."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from support.fake_bulk import FakeBulk
from support.fault_proxy import FaultProxy, Mode
from support.pipeline import (
    assert_index_matches,
    dlq_rows,
    pipeline_settings,
    prepare_pipeline,
    read_topic,
    service_caught_up,
    wait_for,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import plan_events, produce_records
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.circuit import CircuitState

FAST_RETRY = {
    "retry.initial_backoff_ms": 50,
    "retry.max_backoff_ms": 500,
    "retry.circuit_probe_max_s": 0.5,
    "kafka.commit_interval_ms": 50,
}


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _via(dsn: str, proxy: FaultProxy) -> str:
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{proxy.address}"))


def _committed(service: IndexerService) -> dict[int, int]:
    return {tp.partition: offset for tp, offset in service.committed_offsets().items()}


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels or None) or 0.0


async def test_opensearch_outage_pauses_and_holds_offsets_then_everything_is_indexed(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    unique_name: str,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=6)
    plan = plan_events(6_000, listings=1_500, seed=31, poison_every=0)
    async with FaultProxy(*_host_port(opensearch_url)) as proxy:
        settings = pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=proxy.url(),
            pg_dsn=pg_dsn,
            topic=topic,
            name=unique_name,
            **FAST_RETRY,
            **{"batch.max_records": 50, "opensearch.max_in_flight_bulks": 1},
        )
        metrics = Metrics(CollectorRegistry())
        ends = await produce_records(kafka_bootstrap, topic, plan.records)
        async with IndexerService(settings, metrics) as service:
            await wait_for(lambda: _any(service), within_s=60, what="a first commit", step=0.05)
            await proxy.set_mode(Mode.REFUSE)
            await wait_for(
                lambda: _is_open(service), within_s=60, what="the circuit to open", step=0.05
            )
            at_open = _committed(service)
            assert _sample(metrics, "stream_indexer_circuit_state") == CircuitState.OPEN
            assert not service.readiness()[0]
            # the outage itself: 20 s of a refused sink while records keep waiting
            await asyncio.sleep(20)
            assert _committed(service) == at_open, "an offset moved while the sink was down"
            assert _sample(metrics, "stream_indexer_paused_partitions") == len(service.assignment)
            assert sum(at_open.values()) < sum(ends.values()), "outage was not mid-stream"
            await proxy.set_mode(Mode.PASS)
            await wait_for(lambda: service_caught_up(service, ends), within_s=120, what="catch-up")
            assert service.circuit.state is CircuitState.CLOSED
            assert service.circuit.opened_total >= 1
    assert _sample(metrics, "stream_indexer_circuit_state") == CircuitState.CLOSED
    assert await dlq_rows(pg_dsn) == [], "valid events were dead-lettered during the outage"
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


async def _any(service: IndexerService) -> bool:
    return bool(service.committed_offsets())


async def _is_open(service: IndexerService) -> bool:
    return service.circuit.is_open


async def test_sink_absent_at_start_then_present_with_compressed_poison_stream(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    unique_name: str,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=3)
    plan = plan_events(2_000, listings=400, seed=32, poison_every=100)
    async with FaultProxy(*_host_port(opensearch_url)) as proxy:
        await proxy.set_mode(Mode.RESET)
        settings = pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=proxy.url(),
            pg_dsn=pg_dsn,
            topic=topic,
            name=unique_name,
            **FAST_RETRY,
        )
        ends = await produce_records(kafka_bootstrap, topic, plan.records, compression="zstd")
        service = IndexerService(settings, Metrics(CollectorRegistry()))
        starting = asyncio.create_task(service.start())
        try:
            await proxy.wait_for_connections(3)  # start-up keeps trying the absent sink
            assert not starting.done()
            await proxy.set_mode(Mode.PASS)
            await asyncio.wait_for(starting, 60)
            await wait_for(lambda: service_caught_up(service, ends), within_s=90, what="catch-up")
        finally:
            await service.stop()
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)
    assert len(await dlq_rows(pg_dsn)) == plan.poison


async def test_mixed_item_results_resend_only_failures_and_hold_the_offset(
    kafka_bootstrap: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    unique_name: str,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    import random
    from datetime import UTC, datetime

    rng = random.Random(1)
    now = datetime.now(UTC)
    records = [
        (str(lid).encode(), event_bytes(lid, 10, "index", listing_data(rng, lid, now), now, rng))
        for lid in range(1, 7)
    ]
    plan_specs: dict[int, list[Any]] = {
        0: [201, 409, "mapper_parsing_exception", 429, 503, 201],
        1: [429, 201],  # listing 4 throttled again, listing 5 now succeeds
        2: [201],
    }
    commits_seen: list[dict[int, int]] = []
    service_box: list[IndexerService] = []

    def rule(request_no: int, item_no: int, doc_id: str, action: Any, source: Any) -> Any:
        if item_no == 0 and service_box:
            commits_seen.append(_committed(service_box[0]))
        specs = plan_specs.get(request_no)
        return specs[item_no] if specs is not None else None

    async with FakeBulk() as fake:
        fake.script(rule, rule, rule)
        settings = pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=fake.url,
            pg_dsn=pg_dsn,
            topic=topic,
            name=unique_name,
            **FAST_RETRY,
            **{"batch.linger_ms": 500},
        )
        ends = await produce_records(kafka_bootstrap, topic, records)
        async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
            service_box.append(service)
            await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="catch-up")
        sent = [request.ids for request in fake.requests]
    assert sent == [["1", "2", "3", "4", "5", "6"], ["4", "5"], ["4"]]
    # while items were retrying, nothing of the batch was committed
    assert commits_seen[1:] and all(seen.get(0, -1) < 6 for seen in commits_seen[1:])
    rows = await dlq_rows(pg_dsn)
    assert [(row["listing_id"], row["error_class"]) for row in rows] == [(3, "mapping_rejected")]


async def test_postgres_down_holds_the_offset_at_poison_then_one_row_and_one_record(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    unique_name: str,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    plan = plan_events(4, listings=4, seed=33, poison_every=0, delete_ratio=0)
    records = list(plan.records)
    records.insert(2, (b"77", b'{"broken json'))
    metrics = Metrics(CollectorRegistry())
    async with FaultProxy(*_host_port(_pg_host(pg_dsn))) as proxy:
        settings = pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=opensearch_url,
            pg_dsn=_via(pg_dsn, proxy),
            topic=topic,
            name=unique_name,
            **FAST_RETRY,
        )
        async with IndexerService(settings, metrics) as service:
            await asyncio.wait_for(service.assigned.wait(), 30)
            await proxy.set_mode(Mode.REFUSE)
            ends = await produce_records(kafka_bootstrap, topic, records)
            await wait_for(lambda: _dlq_failed(metrics, 3), within_s=60, what="failed DLQ writes")
            assert _committed(service).get(0, -1) <= 2, "committed past the held poison record"
            await proxy.set_mode(Mode.PASS)
            await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="catch-up")
    rows = await dlq_rows(pg_dsn)
    assert [(row["listing_id"], row["offset"], row["attempts"]) for row in rows] == [(77, 2, 1)]
    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", expected=1)
    assert [record.value for record in dead] == [b'{"broken json']
    for store in ("postgres", "kafka"):
        written = _sample(
            metrics, "stream_indexer_dlq_writes_total", store=store, error_class="undecodable"
        )
        assert written == 1, f"{store}: the dead letter is counted once, when that store has it"


def _pg_host(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port}"


async def _dlq_failed(metrics: Metrics, at_least: int) -> bool:
    return _sample(metrics, "stream_indexer_dlq_write_failures_total", store="postgres") >= (
        at_least
    )


async def test_poison_flood_keeps_valid_records_flowing(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=3)
    plan = plan_events(1_500, listings=500, seed=34, poison_every=1)
    assert plan.poison == 1_500
    settings = settings_for(topic)
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=120, what="catch-up")
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)
    assert len(await dlq_rows(pg_dsn)) == plan.poison
    assert TopicPartition(topic, 0) in service.committed_offsets()
