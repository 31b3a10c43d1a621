"""`stream-indexer dlq replay` round trips on the real stack, with the indexer running:
a still-poison record comes back dead-lettered with its replay count until the loop limit
refuses it; records valid now are indexed once replayed."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from support.pipeline import (
    committed_offsets,
    dlq_rows,
    read_alias,
    read_topic,
    settings_env,
    wait_for,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.migrate import migrate_up
from stream_indexer.app.service import IndexerService
from stream_indexer.cli import main
from stream_indexer.dlq import DeadLetter, KafkaDeadLetterTopic
from stream_indexer.observability.metrics import Metrics
from stream_indexer.settings import Settings

POISON_KEY = b"77"
POISON_VALUE = b"\xff\xfe not utf-8"


@pytest.fixture
async def settings(
    pg_dsn: str,
    topic_factory: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    settings_for: SettingsFactory,
) -> AsyncIterator[Settings]:
    """A source topic (2 partitions), its DLQ topic (3, some stay empty), a migrated
    database, and STREAM_INDEXER_* set to match."""
    topic = await topic_factory(partitions=2)
    await topic_factory(partitions=3, name=f"{topic}.dlq")
    await migrate_up(pg_dsn)
    settings = settings_for(topic)
    for name in list(os.environ):
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.delenv(name)
    for name, value in settings_env(settings).items():
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.setenv(name, value)
    yield settings


async def replay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`stream-indexer dlq replay <argv>` in a thread (it runs its own event loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["dlq", "replay", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def replay_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = await replay(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


async def dlq_records(settings: Settings, expected: int) -> list[Any]:
    """The DLQ topic's records, once there are at least `expected`."""
    bootstrap = settings.kafka.bootstrap_servers
    found: list[Any] = []

    async def enough() -> bool:
        found[:] = await read_topic(bootstrap, settings.dlq_topic, expected=expected, within_s=2)
        return len(found) >= expected

    await wait_for(enough, within_s=60, what=f"{expected} records in the DLQ topic", step=0)
    return sorted(found, key=lambda r: r.offset)


def names(record: Any) -> list[str]:
    return [name for name, _value in record.headers]


async def test_poison_replays_come_back_with_a_count_until_the_limit_refuses_them(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = settings.kafka.bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        sent = await (
            await producer.send(
                settings.kafka.topic,
                key=POISON_KEY,
                value=POISON_VALUE,
                headers=[("trace", b"t-1")],
            )
        )
    finally:
        await producer.stop()
    replay_group = f"{settings.kafka.group_id}-dlq-replay"

    async with IndexerService(settings, Metrics(CollectorRegistry())):
        [first] = await dlq_records(settings, 1)
        assert "x-replay-count" not in names(first)

        planned = await replay_json(capsys, "--dry-run")
        assert (planned["would_replay"], planned["replayed"]) == (1, 0)
        committed = await committed_offsets(bootstrap, replay_group, settings.dlq_topic, 3)
        assert committed == {0: -1, 1: -1, 2: -1}, "a dry run committed"

        for count in (1, 2, 3):
            report = await replay_json(capsys)
            # Each run resumes after what the previous one replayed: one record each time.
            assert (report["examined"], report["replayed"]) == (1, 1), report
            assert report["by_topic"] == {settings.kafka.topic: 1}
            records = await dlq_records(settings, count + 1)
            assert len(records) == count + 1
            newest = records[-1]
            headers = dict(newest.headers)
            assert headers["x-replay-count"] == str(count).encode()
            assert headers["trace"] == b"t-1"
            assert headers["x-dlq-error-class"] == b"undecodable"
            assert headers["x-dlq-original-partition"] == str(sent.partition).encode()
            assert names(newest).count("x-dlq-original-topic") == 1
            assert names(newest).count("x-replay-count") == 1
            assert (newest.key, newest.value) == (POISON_KEY, POISON_VALUE)

        code, out, _ = await replay(capsys)
        assert code == 0
        assert "replayed 0 of 1 records examined" in out
        assert "skipped 1 at the replay limit (x-replay-count >= 3)" in out
        assert len(await read_topic(bootstrap, settings.dlq_topic, expected=4, within_s=2)) == 4

        code, out, _ = await replay(capsys, "--max-replays", "5", "--dry-run")
        assert code == 0 and "nothing was published" in out
    source = await read_topic(bootstrap, settings.kafka.topic, expected=4, within_s=5)
    assert len(source) == 4
    assert {record.partition for record in source} == {sent.partition}
    [row] = await dlq_rows(settings.postgres.dsn.get_secret_value())
    assert (row["listing_id"], row["attempts"]) == (77, 4)


def valid_event(listing_id: int, version: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "action": "index",
            "listing_id": listing_id,
            "version": version,
            "occurred_at": now,
            "data": {
                "id": listing_id,
                "title": f"Fixed listing {listing_id}",
                "price": 3,
                "status": "active",
                "updated_at": now,
            },
        }
    )


def dead_letter(topic: str, offset: int, listing_id: int, error_class: str) -> DeadLetter:
    value = valid_event(listing_id, 5)
    return DeadLetter(
        topic=topic,
        partition=1,
        offset=offset,
        timestamp_ms=None,
        key=str(listing_id).encode(),
        value=value,
        headers=(("trace", str(listing_id).encode()),),
        listing_id=listing_id,
        action="index",
        data=orjson.loads(value),
        error_class=error_class,
        error_message="fabricated for the test",
        attempts=1,
        consumer_group="stream-indexer",
        failed_at=datetime.now(UTC),
    )


async def test_records_valid_now_are_indexed_after_replay(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = settings.kafka.bootstrap_servers
    topic = settings.kafka.topic
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await KafkaDeadLetterTopic(producer, settings.dlq_topic).publish(
            [
                dead_letter(topic, 10, 801, "mapping_rejected"),
                dead_letter(topic, 11, 802, "mapping_rejected"),
                dead_letter(topic, 12, 803, "retries_exhausted"),
            ]
        )
    finally:
        await producer.stop()
    alias = settings.opensearch.index
    opensearch_url = settings.opensearch.hosts[0]

    first = await replay_json(capsys, "--error-class", "mapping_rejected", "--limit", "1")
    assert first["replayed"] == 1
    # The second run resumes where the first stopped (at its limit).
    rest = await replay_json(capsys, "--error-class", "mapping_rejected", "--rate", "50")
    assert rest["replayed"] == 1 and rest["by_topic"] == {topic: 1}
    assert first["examined"] + rest["examined"] == 3
    assert first["filtered_out"] + rest["filtered_out"] == 1

    async with IndexerService(settings, Metrics(CollectorRegistry())):

        async def indexed(*ids: int) -> bool:
            return set(ids) <= set(await read_alias(opensearch_url, alias))

        await wait_for(lambda: indexed(801, 802), within_s=60, what="801 and 802 indexed")
        assert 803 not in await read_alias(opensearch_url, alias)

        other = await replay_json(
            capsys, "--group-id", "other-replay", "--listing-id", "803", "--to-topic", topic
        )
        assert (other["replayed"], other["filtered_out"]) == (1, 2)
        await wait_for(lambda: indexed(803), within_s=60, what="803 indexed")

    docs = await read_alias(opensearch_url, alias)
    assert docs[801]["title"] == "Fixed listing 801" and docs[801]["version"] == 5
    source = await read_topic(bootstrap, topic, expected=3, within_s=5)
    assert sorted(record.key for record in source) == [b"801", b"802", b"803"]
    for record in source:
        assert list(record.headers) == [("trace", record.key), ("x-replay-count", b"1")]
    replayed_by_original_partition = [r for r in source if r.key in (b"801", b"802")]
    assert {r.partition for r in replayed_by_original_partition} == {1}
    assert not await dlq_rows(settings.postgres.dsn.get_secret_value())
