"""Adaptive request concurrency on the real pipeline: the in-flight limit climbs while the
sink keeps pace, drops when it answers slowly or with 429, and climbs back afterwards."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from support.fake_bulk import FakeBulk, ItemSpec
from support.pipeline import pipeline_settings, prepare_pipeline, wait_for
from support.stack_fixtures import TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import produce_records
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.observability.metrics import Metrics

LIMIT = "stream_indexer_bulk_concurrency_limit"
#: per item: a 50-document request takes 10 ms, a slow one ten times that
FAST_S, SLOW_S = 0.0002, 0.002


async def _produce_until(stop: asyncio.Event, bootstrap: str, topic: str) -> None:
    """Keep a backlog in front of the indexer until `stop` is set (the test decides when)."""
    rng = random.Random(5)
    versions = itertools.count(1)
    while not stop.is_set():
        now = datetime.now(UTC)
        records = []
        for _ in range(2_000):
            listing = rng.randrange(1, 50_000)
            version = next(versions)
            data = listing_data(rng, listing, now)
            records.append(
                (str(listing).encode(), event_bytes(listing, version, "index", data, now, rng))
            )
        await produce_records(bootstrap, topic, records)


def _too_many_requests(*_: object) -> ItemSpec:
    return 429


async def test_the_limit_follows_latency_and_back_pressure(
    kafka_bootstrap: str, pg_dsn: str, topic_factory: TopicFactory, unique_name: str
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=4)
    metrics = Metrics(CollectorRegistry())

    def limit() -> float:
        return metrics.registry.get_sample_value(LIMIT) or 0.0

    def at_least(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return limit() >= n

        return check

    def below(n: float) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return limit() < n

        return check

    async with FakeBulk() as fake:
        fake.latency_per_item_s = FAST_S
        settings = pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=fake.url,
            pg_dsn=pg_dsn,
            topic=topic,
            name=unique_name,
            **{
                "opensearch.adaptive_concurrency": True,
                "opensearch.max_in_flight_bulks": 4,
                "opensearch.bulk_max_docs": 100,
                "batch.max_records": 50,
                "retry.initial_backoff_ms": 20,
                "retry.max_backoff_ms": 200,
            },
        )
        stop = asyncio.Event()
        producer = asyncio.create_task(_produce_until(stop, kafka_bootstrap, topic))
        try:
            async with IndexerService(settings, metrics) as service:
                assert limit() == 1  # it starts at the lower bound
                await wait_for(at_least(3), within_s=90, what="the limit to climb", step=0.01)
                high = limit()

                fake.latency_per_item_s = SLOW_S  # the cluster starts queueing
                await wait_for(below(high), within_s=60, what="a decrease on latency", step=0.01)
                fake.latency_per_item_s = FAST_S
                await wait_for(at_least(3), within_s=90, what="the limit to recover", step=0.01)

                fake.script(default=_too_many_requests)  # every item refused for load
                await wait_for(below(2), within_s=60, what="the limit to reach 1", step=0.01)
                fake.script()  # the cluster accepts again
                await wait_for(at_least(2), within_s=90, what="the limit to climb back", step=0.01)
                assert service.circuit.opened_total == 0  # item 429s never open the circuit
        finally:
            stop.set()
            await producer
