"""End to end: events emitted by the producer library (directly and through the outbox
relay) are indexed by the consumer, newest version winning and deletes removing."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from prometheus_client import CollectorRegistry
from support.pipeline import read_alias, wait_for
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app import service
from stream_indexer.app.migrate import migrate_up
from stream_indexer.observability.metrics import Metrics
from stream_indexer.producer import ListingEventProducer, OutboxRelay, insert_event
from stream_indexer.producer.events import delete_event, index_event

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def listing(listing_id: int, title: str) -> dict[str, object]:
    return {"id": listing_id, "title": title, "price": 9.5, "status": "active", "updated_at": NOW}


async def test_events_from_the_library_and_the_outbox_are_indexed(
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await topic_factory(partitions=3)
    await topic_factory(partitions=1, name=f"{topic}.dlq")
    await migrate_up(pg_dsn)
    settings = settings_for(
        topic, **{"producer.enable_idempotence": False, "outbox.poll_interval_ms": 20}
    )
    expected = {i: f"listing {i} v3" for i in range(1, 31) if i % 10}
    async with ListingEventProducer(settings) as producer:
        for version in (1, 3, 2):  # version 2 arrives last and must lose
            for i in range(1, 21):
                await producer.emit_index(listing(i, f"listing {i} v{version}"), version)
        await producer.emit_delete(10, 4)
        await producer.emit_delete(20, 4)
        await producer.flush()
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            for i in range(21, 31):
                await insert_event(conn, index_event(listing(i, f"listing {i} v3"), 3), topic=topic)
            await insert_event(conn, delete_event(30, 5), topic=topic)
    finally:
        await conn.close()

    async def indexed() -> bool:
        docs = await read_alias(opensearch_url, settings.opensearch.index)
        return {i: d["title"] for i, d in docs.items()} == expected

    async with (
        OutboxRelay(settings, registry=CollectorRegistry()),
        service.IndexerService(settings, Metrics(CollectorRegistry())),
    ):
        await wait_for(indexed, within_s=120, what="the emitted events to be indexed")
