"""Hydration: a listing whose source row makes the query fail every time is dead-lettered
alone; the other thin events of its batch are indexed and the partition reaches its end."""

from __future__ import annotations

import uuid

import asyncpg
import orjson
from prometheus_client import CollectorRegistry
from support.pipeline import (
    dlq_rows,
    prepare_pipeline,
    read_alias,
    service_caught_up,
    wait_for,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import produce_records
from stream_indexer.observability.metrics import Metrics

NOW = "2024-06-01T12:00:00+00:00"
BROKEN = 13


def thin(listing_id: int) -> tuple[bytes, bytes]:
    event = {
        "event_id": str(uuid.uuid4()),
        "action": "index",
        "listing_id": listing_id,
        "version": 1,
        "occurred_at": NOW,
    }
    return b"%d" % listing_id, orjson.dumps(event)


async def test_a_row_that_breaks_the_source_query_is_dead_lettered_alone(
    pg_dsn: str, topic_factory: TopicFactory, settings_for: SettingsFactory, opensearch_url: str
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    conn = await asyncpg.connect(pg_dsn)
    try:
        # The source is a view; computing listing 13's row divides by zero (SQLSTATE 22012),
        # so every query that selects it fails, whatever else it selects.
        await conn.execute(
            f"""
            CREATE TABLE listing_rows (id bigint PRIMARY KEY, title text);
            INSERT INTO listing_rows SELECT n, 'Listing ' || n FROM generate_series(10, 16) n;
            CREATE VIEW listings AS
                SELECT id, title, 10.0 AS price, 'active' AS status,
                       '{NOW}'::timestamptz AS updated_at, 1 / (id - {BROKEN}) AS boom
                FROM listing_rows;
            """
        )
    finally:
        await conn.close()
    settings = settings_for(topic, **{"batch.linger_ms": 200})
    ends = await produce_records(
        settings.kafka.bootstrap_servers, topic, [thin(n) for n in range(10, 17)]
    )
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="catch-up")

    rows = await dlq_rows(pg_dsn)
    assert [(row["listing_id"], row["error_class"]) for row in rows] == [
        (BROKEN, "source_row_rejected")
    ]
    documents = await read_alias(opensearch_url, settings.opensearch.index)
    assert sorted(documents) == [n for n in range(10, 17) if n != BROKEN]
