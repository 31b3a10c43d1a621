"""Property: whatever bytes or JSON a producer writes, the partition reaches its end offset.

One indexer runs on the real stack for the whole test; each example produces a handful of
records (arbitrary bytes, arbitrary JSON, event-shaped JSON with arbitrary field values,
now and then a value over the DLQ producer's request size) and waits for the committed
offset to reach the end. A record that could hold its partition forever fails the example.
Thin events hydrate from a real (empty) source table, so they become deletes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from support.pipeline import prepare_pipeline, service_caught_up, wait_for
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.observability.metrics import Metrics

MIB = 1024 * 1024
NOW = "2024-06-01T12:00:00+00:00"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def as_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits
        return repr(value).encode("utf-8", "surrogatepass")


events = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str) | json_values,
        "action": st.sampled_from(["index", "delete"]) | json_values,
        "listing_id": st.integers(min_value=-5, max_value=2**64) | json_values,
        "version": st.integers(min_value=-5, max_value=2**64) | json_values,
        "occurred_at": st.just(NOW) | json_values,
    },
    optional={
        "data": json_values
        | st.fixed_dictionaries(
            {
                "id": st.integers(min_value=0, max_value=50),
                "title": st.text(max_size=40),
                "price": st.floats(),
                "status": st.just("active"),
                "updated_at": st.just(NOW),
            }
        )
    },
)

values = (
    st.none()
    | st.binary(max_size=200)
    | json_values.map(as_json)
    | events.map(as_json)
    | st.integers(min_value=MIB + 1, max_value=2 * MIB + 100).map(lambda n: b"x" * n)
)
keys = st.none() | st.binary(max_size=12) | st.integers(0, 60).map(lambda n: b"%d" % n)
records = st.lists(st.tuples(keys, values), min_size=1, max_size=4)


@pytest.fixture
async def service(
    pg_dsn: str, topic_factory: TopicFactory, settings_for: SettingsFactory
) -> AsyncIterator[IndexerService]:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE listings (id bigint PRIMARY KEY, title text)")
    finally:
        await conn.close()
    app_settings = settings_for(topic, **{"batch.linger_ms": 0, "kafka.commit_interval_ms": 50})
    async with IndexerService(app_settings, Metrics(CollectorRegistry())) as running:
        await running.assigned.wait()
        yield running


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=False, max_request_size=4 * MIB
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@pytest.mark.timeout(170)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=records)
async def test_any_value_lets_the_partition_reach_its_end(
    service: IndexerService,
    producer: AIOKafkaProducer,
    batch: list[tuple[bytes | None, bytes | None]],
) -> None:
    topic = service.settings.kafka.topic
    end = 0
    for key, value in batch:
        if key is None and value is None:
            value = b""  # aiokafka refuses a record with neither
        meta = await (await producer.send(topic, key=key, value=value, partition=0))
        end = meta.offset + 1
    await wait_for(
        lambda: service_caught_up(service, {0: end}), within_s=30, what="end offset", step=0.05
    )
    assert service.liveness()[0]
