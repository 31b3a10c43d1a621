"""Dead letters close themselves (docs/dlq.md, "Lifecycle"), with the indexer running on the
real stack: rows resolve `indexed` after the cause is fixed and they are replayed,
`superseded` when a newer version of the listing is indexed, stay open (attempts growing)
when the replayed copy fails again, and resolve after the table comes back from an outage
that indexing and commits went on through."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from opensearchpy import AsyncOpenSearch
from prometheus_client import CollectorRegistry
from support.pipeline import read_alias, settings_env, wait_for
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.migrate import migrate_up
from stream_indexer.app.service import IndexerService
from stream_indexer.cli import main
from stream_indexer.dlq import DeadLetter, PostgresDeadLetterTable
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.mapping import index_body
from stream_indexer.settings import Settings


@pytest.fixture
async def settings(
    pg_dsn: str,
    topic_factory: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    settings_for: SettingsFactory,
) -> AsyncIterator[Settings]:
    """One source partition (so replays keep order), its DLQ topic, a migrated database,
    short backoffs, and STREAM_INDEXER_* set to match for the CLI."""
    topic = await topic_factory(partitions=1)
    await topic_factory(partitions=1, name=f"{topic}.dlq")
    await migrate_up(pg_dsn)
    settings = settings_for(
        topic,
        **{"retry.initial_backoff_ms": 20, "retry.max_backoff_ms": 200, "batch.linger_ms": 0},
    )
    for name in list(os.environ):
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.delenv(name)
    for name, value in settings_env(settings).items():
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.setenv(name, value)
    yield settings


def event(listing_id: int, version: int, **data: Any) -> bytes:
    now = datetime.now(UTC).isoformat()
    listing = {
        "id": listing_id,
        "title": f"Listing {listing_id} v{version}",
        "price": 5,
        "status": "active",
        "updated_at": now,
        **data,
    }
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "action": "index",
            "listing_id": listing_id,
            "version": version,
            "occurred_at": now,
            "data": listing,
        }
    )


async def produce(settings: Settings, records: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        for listing_id, value in records:
            await producer.send_and_wait(
                settings.kafka.topic, key=str(listing_id).encode(), value=value, partition=0
            )
    finally:
        await producer.stop()


async def rows(settings: Settings) -> dict[int, asyncpg.Record]:
    conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    try:
        found = await conn.fetch("SELECT * FROM opensearch_indexing_dlq ORDER BY id")
    finally:
        await conn.close()
    return {row["listing_id"]: row for row in found}


async def states(settings: Settings) -> dict[int, str | None]:
    return {listing: row["resolution"] for listing, row in (await rows(settings)).items()}


async def until_states(settings: Settings, expected: dict[int, str | None], what: str) -> None:
    async def reached() -> bool:
        return await states(settings) == expected

    await wait_for(reached, within_s=60, what=what)


async def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    code = await asyncio.to_thread(main, [*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def resolved_metric(metrics: Metrics, resolution: str) -> float:
    value = metrics.registry.get_sample_value(
        "stream_indexer_dlq_resolved_rows_total", {"resolution": resolution}
    )
    return value or 0.0


async def test_replay_after_the_fix_resolves_rows_and_newer_versions_supersede_them(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # The cause: the index was created without `city`, so a strict mapping refuses it.
    body = index_body()
    del body["mappings"]["properties"]["city"]
    client = AsyncOpenSearch(hosts=settings.opensearch.hosts)
    try:
        await client.indices.create(index=settings.physical_index, body=body)
    finally:
        await client.close()
    first = Metrics(CollectorRegistry())
    async with IndexerService(settings, first):
        await produce(
            settings,
            [
                (901, event(901, 1, city="Berlin")),
                (902, event(902, 1, city="Paris")),
                (903, event(903, 1, city="Rome")),
                (905, event(905, 1, title="")),  # schema-invalid: no fix will make it pass
            ],
        )
        await until_states(settings, {901: None, 902: None, 903: None, 905: None}, "four open rows")
        before = await rows(settings)
        assert {before[n]["error_class"] for n in (901, 902, 903)} == {"mapping_rejected"}
        assert {row["version"] for row in before.values()} == {1}
        # A newer version of 903 (without the refused field) makes its letter moot.
        await produce(settings, [(903, event(903, 2))])
        await until_states(
            settings, {901: None, 902: None, 903: "superseded", 905: None}, "903 superseded"
        )
    assert resolved_metric(first, "superseded") == 1

    # The fix, then the replay while the indexer is down: rows wait for it.
    client = AsyncOpenSearch(hosts=settings.opensearch.hosts)
    try:
        await client.indices.put_mapping(
            index=settings.physical_index, body={"properties": {"city": {"type": "keyword"}}}
        )
    finally:
        await client.close()
    report = await cli_json(capsys, "dlq", "replay")
    assert (report["replayed"], report["rows_not_marked"]) == (4, 0)
    listed = {row["listing_id"]: row for row in await cli_json(capsys, "dlq", "list")}
    assert set(listed) == {901, 902, 905}
    assert {listed[n]["state"] for n in listed} == {"replayed, waiting"}
    assert {listed[n]["replay_count"] for n in listed} == {1}
    history = await cli_json(capsys, "dlq", "list", "--resolved")
    assert [(row["listing_id"], row["state"]) for row in history] == [(903, "superseded")]

    second = Metrics(CollectorRegistry())
    async with IndexerService(settings, second):
        await until_states(
            settings,
            {901: "indexed", 902: "indexed", 903: "superseded", 905: None},
            "replayed rows resolved",
        )

        async def failed_again() -> bool:
            return (await rows(settings))[905]["attempts"] == 2

        await wait_for(failed_again, within_s=60, what="905 failed again")
    after = await rows(settings)
    assert after[905]["resolved_at"] is None and after[905]["replayed_at"] is None
    assert after[905]["replay_count"] == 1
    assert resolved_metric(second, "indexed") == 2
    assert resolved_metric(second, "superseded") == 0  # 903's stale copy found it closed
    docs = await read_alias(settings.opensearch.hosts[0], settings.opensearch.index)
    assert docs[901]["city"] == "Berlin" and docs[902]["city"] == "Paris"
    assert docs[903]["version"] == 2 and "city" not in docs[903]
    assert 905 not in docs
    [open_row] = await cli_json(capsys, "dlq", "list")
    assert (open_row["listing_id"], open_row["state"]) == (905, "open")
    stats = await cli_json(capsys, "dlq", "stats")
    assert stats["total"] == 1
    assert stats["by_state"] == {"indexed": 2, "open": 1, "superseded": 1}


def letter(listing_id: int, version: int, offset: int) -> DeadLetter:
    value = event(listing_id, version)
    return DeadLetter(
        topic="elsewhere",
        partition=0,
        offset=offset,
        timestamp_ms=None,
        key=str(listing_id).encode(),
        value=value,
        headers=(),
        listing_id=listing_id,
        action="index",
        data=orjson.loads(value),
        error_class="mapping_rejected",
        error_message="fabricated for the test",
        attempts=1,
        consumer_group="stream-indexer",
        failed_at=datetime.now(UTC),
        version=version,
    )


async def test_indexing_and_commits_go_on_while_the_table_is_down_then_rows_resolve(
    settings: Settings,
) -> None:
    dsn = settings.postgres.dsn.get_secret_value()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await PostgresDeadLetterTable(pool).write(
            [letter(950, 3, 1), letter(951, 3, 2), letter(952, 3, 3), letter(953, 9, 4)]
        )
    finally:
        await pool.close()
    metrics = Metrics(CollectorRegistry())
    conn = await asyncpg.connect(dsn)
    try:
        async with IndexerService(settings, metrics) as service:
            await conn.execute("ALTER TABLE opensearch_indexing_dlq RENAME TO dlq_away")
            await produce(
                settings,
                [
                    (950, event(950, 3)),
                    (951, event(951, 4)),
                    (952, event(952, 5)),
                    (953, event(953, 1)),
                ],
            )

            async def committed() -> bool:
                return {tp.partition: o for tp, o in service.committed_offsets().items()} == {0: 4}

            await wait_for(committed, within_s=60, what="all four records committed")
            docs = await read_alias(settings.opensearch.hosts[0], settings.opensearch.index)
            assert {n: docs[n]["version"] for n in docs} == {950: 3, 951: 4, 952: 5, 953: 1}
            resolver = service.wiring.resolver
            assert resolver is not None
            assert not resolver.resolved  # nothing could be written while the table was away
            away = await conn.fetch("SELECT resolution FROM dlq_away")
            assert [row["resolution"] for row in away] == [None] * 4

            await conn.execute("ALTER TABLE dlq_away RENAME TO opensearch_indexing_dlq")
            await asyncio.wait_for(resolver.drained(), 60)
            assert resolver.resolved == {"indexed": 1, "superseded": 2}
            assert resolver.dropped == 0
    finally:
        await conn.close()
    assert await states(settings) == {
        950: "indexed",
        951: "superseded",
        952: "superseded",
        953: None,  # its letter is version 9: an older event does not close it
    }
