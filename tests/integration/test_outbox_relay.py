"""The transactional outbox: inserts ride the caller's transaction, and the relay delivers
every row to Kafka in order per listing, across a SIGKILL, and with two relays at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from stream_indexer.app.migrate import migrate_up
from stream_indexer.models import ListingEvent
from stream_indexer.producer import InvalidEventError, OutboxRelay, delete_event, index_event
from stream_indexer.producer.outbox import insert_event
from stream_indexer.settings import load_settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TABLE = "listing_events_outbox"


def listing(listing_id: int) -> dict[str, object]:
    return {"id": listing_id, "title": "Lamp", "price": 3, "status": "active", "updated_at": NOW}


def events(listings: int, per_listing: int) -> Iterator[ListingEvent]:
    """Versions 1..per_listing for each listing, interleaved across listings."""
    for version in range(1, per_listing + 1):
        for listing_id in range(1, listings + 1):
            if version == per_listing and listing_id % 5 == 0:
                yield delete_event(listing_id, version)
            else:
                yield index_event(listing(listing_id), version)


async def fill_outbox(dsn: str, topic: str, listings: int, per_listing: int) -> set[uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = set()
        async with conn.transaction():
            for event in events(listings, per_listing):
                await insert_event(conn, event, topic=topic)
                ids.add(event.event_id)
        return ids
    finally:
        await conn.close()


async def count_sent(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(f"SELECT count(sent_at), count(*) FROM {TABLE}")
        return row[0], row[1]
    finally:
        await conn.close()


async def wait_until_sent(dsn: str, at_least: int) -> int:
    async with asyncio.timeout(90):
        while True:
            sent, _ = await count_sent(dsn)
            if sent >= at_least:
                return sent
            await asyncio.sleep(0.02)


async def read_events(bootstrap: str, topic: str, expected: int) -> list[ListingEvent]:
    """Every record on `topic` (at least `expected`), in per-partition order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        out: list[ListingEvent] = []
        async with asyncio.timeout(60):
            while True:
                batch = await consumer.getmany(timeout_ms=300)
                if not batch and len(out) >= expected:
                    return out
                for messages in batch.values():
                    out.extend(ListingEvent.model_validate_json(m.value) for m in messages)
    finally:
        await consumer.stop()


def assert_in_order_per_listing(received: list[ListingEvent]) -> None:
    """Each listing's records arrive with non-decreasing versions (repeats = re-sends)."""
    last: dict[int, int] = {}
    for event in received:
        assert event.version >= last.get(event.listing_id, 0), event
        last[event.listing_id] = event.version


@pytest.fixture
async def outbox_dsn(pg_dsn: str) -> str:
    await migrate_up(pg_dsn)
    return pg_dsn


async def test_insert_commits_and_rolls_back_with_the_callers_transaction(
    outbox_dsn: str,
) -> None:
    conn = await asyncpg.connect(outbox_dsn)
    try:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await insert_event(conn, delete_event(1, 2), topic="t")
                raise RuntimeError("the listing update failed")
        async with conn.transaction():
            row_id = await insert_event(conn, delete_event(1, 3), topic="t")
        with pytest.raises(InvalidEventError, match=r"data\.price"):
            await insert_event(
                conn,
                {**index_event(listing(4), 1).model_dump(), "data": {**listing(4), "price": -5}},
                topic="t",
            )
        rows = await conn.fetch(f"SELECT id, version, key FROM {TABLE}")
    finally:
        await conn.close()
    assert [(r["id"], r["version"], r["key"]) for r in rows] == [(row_id, 3, b"1")]


def relay_env(dsn: str, bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_INDEXER_")}
    env.update(
        STREAM_INDEXER_POSTGRES__DSN=dsn,
        STREAM_INDEXER_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        STREAM_INDEXER_PRODUCER__ENABLE_IDEMPOTENCE="false",
        STREAM_INDEXER_METRICS__ENABLED="false",
        STREAM_INDEXER_OUTBOX__BATCH_SIZE="25",
        STREAM_INDEXER_OUTBOX__POLL_INTERVAL_MS="20",
    )
    return env


def start_relay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "stream_indexer", "outbox", "relay"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


@pytest.mark.slow
async def test_relay_delivers_every_row_across_sigkill_and_restart(
    outbox_dsn: str, kafka_bootstrap: str, topic_factory, tmp_path: Path
) -> None:
    topic = await topic_factory(partitions=4)
    log = tmp_path / "relay.log"
    expected = await fill_outbox(outbox_dsn, topic, listings=40, per_listing=50)
    env = relay_env(outbox_dsn, kafka_bootstrap)

    first = start_relay(env, log)
    try:
        sent_before_kill = await wait_until_sent(outbox_dsn, 1)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    sent_after_kill, total = await count_sent(outbox_dsn)
    assert sent_before_kill <= sent_after_kill < total  # killed mid-way

    second = start_relay(env, log)
    try:
        await wait_until_sent(outbox_dsn, total)
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, log.read_text()

    received = await read_events(kafka_bootstrap, topic, len(expected))
    assert {e.event_id for e in received} == expected  # none missing, nothing foreign
    assert_in_order_per_listing(received)


async def test_two_relays_never_publish_the_same_row(
    outbox_dsn: str, kafka_bootstrap: str, topic_factory
) -> None:
    topic = await topic_factory(partitions=3)
    expected = await fill_outbox(outbox_dsn, topic, listings=30, per_listing=20)
    settings = load_settings(
        {
            "postgres.dsn": outbox_dsn,
            "kafka.bootstrap_servers": kafka_bootstrap,
            "producer.enable_idempotence": False,
            "outbox.batch_size": 15,
            "outbox.poll_interval_ms": 20,
        }
    )
    registries = [CollectorRegistry(), CollectorRegistry()]
    relays = [OutboxRelay(settings, registry=r) for r in registries]
    async with relays[0], relays[1]:
        await wait_until_sent(outbox_dsn, len(expected))
        # published through the producer's queue, like every other emit
        via_queue = sum(r.producer.stats["kafka"] for r in relays if r.producer is not None)
    assert via_queue == len(expected)

    received = await read_events(kafka_bootstrap, topic, len(expected))
    assert len(received) == len(expected)  # no row was published twice
    assert {e.event_id for e in received} == expected
    assert_in_order_per_listing(received)
    published = [r.get_sample_value("stream_indexer_outbox_published_total") for r in registries]
    assert sum(p or 0 for p in published) == len(expected)
    assert all(p for p in published), "both relays should have taken a share"


async def test_relay_metrics_report_pending_rows_and_age(
    outbox_dsn: str, kafka_bootstrap: str, topic_factory
) -> None:
    topic = await topic_factory(partitions=1)
    conn = await asyncpg.connect(outbox_dsn)
    try:
        await insert_event(conn, delete_event(1, 1), topic=topic)
        await conn.execute(f"UPDATE {TABLE} SET created_at = now() - interval '1 hour'")
        await insert_event(conn, delete_event(2, 1), topic="not-a-topic-" + "x" * 300)
    finally:
        await conn.close()
    registry = CollectorRegistry()
    settings = load_settings(
        {
            "postgres.dsn": outbox_dsn,
            "kafka.bootstrap_servers": kafka_bootstrap,
            "producer.enable_idempotence": False,
            "producer.delivery_timeout_ms": 2000,
            "outbox.poll_interval_ms": 20,
            "outbox.max_backoff_ms": 200,
        }
    )
    async with OutboxRelay(settings, registry=registry):
        await wait_until_sent(outbox_dsn, 1)
        async with asyncio.timeout(60):
            while True:
                failures = registry.get_sample_value(
                    "stream_indexer_outbox_failures_total", {"stage": "publish"}
                )
                if failures:
                    break
                await asyncio.sleep(0.05)
    assert registry.get_sample_value("stream_indexer_outbox_published_total") == 1
    assert registry.get_sample_value("stream_indexer_outbox_pending_rows") is not None
    age = registry.get_sample_value("stream_indexer_outbox_oldest_pending_age_seconds")
    assert age is not None and age >= 0
    conn = await asyncpg.connect(outbox_dsn)
    try:
        row = await conn.fetchrow(f"SELECT attempts, last_error FROM {TABLE} WHERE listing_id = 2")
    finally:
        await conn.close()
    assert row["attempts"] >= 1 and row["last_error"]
