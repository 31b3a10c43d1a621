"""Both dead-letter stores against real servers: the Postgres upsert and the DLQ topic."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from support.stack_fixtures import TopicFactory

from stream_indexer.app.migrate import migrate_up
from stream_indexer.dlq import (
    DeadLetter,
    DeadLetterWriter,
    KafkaDeadLetterTopic,
    PostgresDeadLetterTable,
    decode_headers,
)
from stream_indexer.dlq.headers import MAX_ERROR_MESSAGE_BYTES
from stream_indexer.errors import ConfigError, DeadLetterStoreError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DLQ_NAMES = [
    "x-dlq-original-topic",
    "x-dlq-original-partition",
    "x-dlq-original-offset",
    "x-dlq-original-timestamp",
    "x-dlq-consumer-group",
    "x-dlq-error-class",
    "x-dlq-error-message",
    "x-dlq-attempts",
    "x-dlq-failed-at",
]


def letter(**changes: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "topic": "listings.changes",
        "partition": 0,
        "offset": 10,
        "timestamp_ms": 1_714_564_800_000,
        "key": b"42",
        "value": b'{"action": "index", "listing_id": 42}',
        "headers": (("trace", b"abc"),),
        "listing_id": 42,
        "action": "index",
        "data": {"action": "index", "listing_id": 42},
        "error_class": "mapping_rejected",
        "error_message": "first failure",
        "attempts": 2,
        "consumer_group": "stream-indexer",
        "failed_at": T0,
    }
    fields.update(changes)
    return DeadLetter(**fields)


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate_up(pg_dsn)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        'SELECT * FROM opensearch_indexing_dlq ORDER BY listing_id, action, "offset"'
    )


async def consume(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while len(records) < count:
            batch = await consumer.getmany(timeout_ms=5_000)
            assert batch, f"only {len(records)} of {count} records arrived"
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


# --- Postgres table ------------------------------------------------------------------------


async def test_same_letter_twice_is_one_row_with_attempts_unchanged(pool: asyncpg.Pool) -> None:
    table = PostgresDeadLetterTable(pool)

    await table.write([letter()])
    await table.write([letter(error_message="same record, failed again")])

    [row] = await rows(pool)
    assert row["attempts"] == 2
    assert row["last_error"] == "same record, failed again"


async def test_later_failure_of_the_listing_updates_the_row_and_adds_attempts(
    pool: asyncpg.Pool,
) -> None:
    table = PostgresDeadLetterTable(pool)
    await table.write([letter()])
    [first] = await rows(pool)

    later = letter(
        offset=20,
        value=b'{"v": 2}',
        data={"v": 2},
        error_message="second failure",
        error_class="retries_exhausted",
        attempts=3,
        failed_at=T0 + timedelta(minutes=5),
    )
    await table.write([later])

    [row] = await rows(pool)
    assert row["id"] == first["id"]
    assert row["attempts"] == 5
    assert row["last_error"] == "second failure"
    assert row["error_class"] == "retries_exhausted"
    assert row["offset"] == 20
    assert row["value"] == b'{"v": 2}'
    assert json.loads(row["data"]) == {"v": 2}
    assert row["last_attempt_at"] == T0 + timedelta(minutes=5)
    assert row["created_at"] == first["created_at"]


async def test_redelivered_older_record_does_not_overwrite_or_count(pool: asyncpg.Pool) -> None:
    table = PostgresDeadLetterTable(pool)
    older = letter(offset=10, attempts=1, error_message="older")
    newer = letter(offset=20, attempts=1, error_message="newer")

    await table.write([older])
    await table.write([newer])
    await table.write([older])

    [row] = await rows(pool)
    assert (row["attempts"], row["offset"], row["last_error"]) == (2, 20, "newer")


async def test_redelivered_batch_counts_only_its_new_records(pool: asyncpg.Pool) -> None:
    """After a crash between DLQ write and commit, the re-fetched batch may hold more records."""
    table = PostgresDeadLetterTable(pool)
    first_batch = [letter(offset=10, attempts=1), letter(offset=11, attempts=2)]
    await table.write(first_batch)
    [row] = await rows(pool)
    assert (row["attempts"], row["offset"]) == (3, 11)

    await table.write([*first_batch, letter(offset=12, attempts=4, error_message="third")])

    [row] = await rows(pool)
    assert (row["attempts"], row["offset"], row["last_error"]) == (7, 12, "third")


async def test_each_action_of_a_listing_has_its_row(pool: asyncpg.Pool) -> None:
    table = PostgresDeadLetterTable(pool)

    await table.write([letter(action="index"), letter(offset=11, action="delete")])

    assert [(row["action"], row["attempts"]) for row in await rows(pool)] == [
        ("delete", 2),
        ("index", 2),
    ]


async def test_rows_without_listing_id_are_one_per_source_offset(pool: asyncpg.Pool) -> None:
    table = PostgresDeadLetterTable(pool)
    undecodable = {"listing_id": None, "action": None, "data": None, "key": None}
    first = letter(offset=5, value=b"\xff not json", **undecodable)

    await table.write([first, letter(offset=6, value=b"{", **undecodable)])
    await table.write([first])  # re-delivery of offset 5

    found = await rows(pool)
    assert [(row["offset"], row["attempts"], row["action"]) for row in found] == [
        (5, 2, "unknown"),
        (6, 2, "unknown"),
    ]
    assert found[0]["listing_id"] is None
    assert found[0]["value"] == b"\xff not json"


async def test_bytes_round_trip_exactly(pool: asyncpg.Pool) -> None:
    table = PostgresDeadLetterTable(pool)
    headers = (("bin", bytes(range(256))), ("dup", b""), ("dup", b"\x00"), ("é", b"\xff"))
    original = letter(key=b"\x00\xff42", value=b"\x80\x00{}\xfe", headers=headers)

    await table.write([original])

    [row] = await rows(pool)
    assert row["key"] == b"\x00\xff42"
    assert row["value"] == b"\x80\x00{}\xfe"
    assert decode_headers(row["headers"]) == headers
    assert json.loads(row["headers"])[1] == ["dup", base64.b64encode(b"").decode()]


async def test_text_postgres_cannot_hold_is_escaped_not_fatal(pool: asyncpg.Pool) -> None:
    table = PostgresDeadLetterTable(pool)

    await table.write([letter(error_message="nul \x00 and \udcff", data={"title": "has \x00 nul"})])

    [row] = await rows(pool)
    assert row["last_error"] == "nul \\x00 and \\udcff"
    assert row["data"] is None  # jsonb cannot hold \u0000; the raw value is still there
    assert row["value"] == letter().value


async def test_closed_pool_raises_dead_letter_store_error(pool: asyncpg.Pool) -> None:
    table = PostgresDeadLetterTable(pool)
    await pool.close()

    with pytest.raises(DeadLetterStoreError, match="postgres"):
        await table.write([letter()])


async def test_unreachable_database_raises_dead_letter_store_error(tmp_path: Path) -> None:
    dsn = f"postgresql://postgres@/postgres?host={tmp_path}"
    unreachable = await asyncpg.create_pool(dsn, min_size=0, max_size=1)
    try:
        with pytest.raises(DeadLetterStoreError, match="opensearch_indexing_dlq"):
            await PostgresDeadLetterTable(unreachable).write([letter()])
    finally:
        await unreachable.close()


async def test_table_name_must_be_an_identifier(pool: asyncpg.Pool) -> None:
    with pytest.raises(ConfigError, match="not a plain SQL identifier"):
        PostgresDeadLetterTable(pool, 'dlq"; DROP TABLE x; --')
    PostgresDeadLetterTable(pool, "public.opensearch_indexing_dlq")


# --- Kafka topic ---------------------------------------------------------------------------


async def test_topic_record_keeps_key_value_and_replaces_dlq_headers(
    producer: AIOKafkaProducer, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory(partitions=1)
    republished = letter(
        key=b"\x00\xff42",
        value=b"\xfe raw",
        headers=(
            ("trace", b"abc"),
            ("x-dlq-error-message", b"an earlier failure"),
            ("x-dlq-attempts", b"9"),
            ("x-replay-count", b"1"),
        ),
        error_message="€" * 3000,  # 9,000 bytes
    )

    await KafkaDeadLetterTopic(producer, topic).publish([republished])

    [record] = await consume(kafka_bootstrap, topic, 1)
    assert record.key == b"\x00\xff42"
    assert record.value == b"\xfe raw"
    names = [name for name, _ in record.headers]
    assert names == ["trace", "x-replay-count", *DLQ_NAMES]
    values = dict(record.headers)
    assert values["x-dlq-original-offset"] == b"10"
    assert values["x-dlq-attempts"] == b"2"
    message = values["x-dlq-error-message"]
    assert len(message) <= MAX_ERROR_MESSAGE_BYTES
    assert message.decode("utf-8").startswith("€" * 1000)


async def test_topic_publishes_every_letter_of_a_batch(
    producer: AIOKafkaProducer, kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory(partitions=1)
    letters = [letter(offset=offset, key=str(offset).encode()) for offset in range(50)]

    await KafkaDeadLetterTopic(producer, topic).publish(letters)

    records = await consume(kafka_bootstrap, topic, 50)
    assert [record.key for record in records] == [str(o).encode() for o in range(50)]


async def test_stopped_producer_raises_dead_letter_store_error(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory(partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    await producer.stop()

    with pytest.raises(DeadLetterStoreError, match=f"kafka \\(topic {topic}\\)"):
        await KafkaDeadLetterTopic(producer, topic, timeout=10).publish([letter()])


# --- Writer --------------------------------------------------------------------------------


async def test_writer_writes_both_stores(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
) -> None:
    topic = await topic_factory(partitions=1)
    writer = DeadLetterWriter(PostgresDeadLetterTable(pool), KafkaDeadLetterTopic(producer, topic))
    assert writer.stores == ("postgres", "kafka")

    await writer.write([letter()])

    assert len(await rows(pool)) == 1
    [record] = await consume(kafka_bootstrap, topic, 1)
    assert record.key == b"42"


async def test_writer_fails_when_one_store_fails_but_finishes_the_other(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
) -> None:
    topic = await topic_factory(partitions=1)
    writer = DeadLetterWriter(PostgresDeadLetterTable(pool), KafkaDeadLetterTopic(producer, topic))
    await pool.close()

    with pytest.raises(DeadLetterStoreError, match="postgres"):
        await writer.write([letter()])

    [record] = await consume(kafka_bootstrap, topic, 1)
    assert record.value == letter().value


def test_writer_needs_a_store() -> None:
    with pytest.raises(ValueError, match="at least one store"):
        DeadLetterWriter(None, None)
