"""The pipeline end to end on the real stack: exact final index, commits, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from prometheus_client import CollectorRegistry
from support.pipeline import (
    SLOW_PIPELINE,
    assert_index_matches,
    caught_up,
    committed_offsets,
    dlq_rows,
    prepare_pipeline,
    read_topic,
    service_caught_up,
    wait_for,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.flow import FlowControl
from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import plan_events, produce_records
from stream_indexer.observability.metrics import Metrics
from stream_indexer.pipeline.worker import PartitionWorker

PARTITIONS = 6


async def test_final_index_is_newest_version_commits_reach_end_and_poison_is_dead_lettered(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=PARTITIONS)
    plan = plan_events(3_000, listings=600, seed=11, poison_every=300)
    assert plan.out_of_order and plan.duplicates and plan.deletes and plan.poison
    settings = settings_for(topic, **{"batch.max_records": 200})
    metrics = Metrics(CollectorRegistry())
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    async with IndexerService(settings, metrics) as service:
        await wait_for(
            lambda: service_caught_up(service, ends),
            within_s=120,
            what="the indexer to commit every produced offset",
        )
    group = settings.kafka.group_id
    assert await caught_up(kafka_bootstrap, group, topic, ends, PARTITIONS)
    committed = await committed_offsets(kafka_bootstrap, group, topic, PARTITIONS)
    assert {p: committed[p] for p in ends} == ends

    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)

    rows = await dlq_rows(pg_dsn)
    assert len(rows) == plan.poison
    assert {row["error_class"] for row in rows} <= {"undecodable", "schema_invalid"}
    assert all(row["value"] is not None and row["topic"] == topic for row in rows)
    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", expected=plan.poison)
    assert len(dead) == plan.poison
    poison_values = {value for _key, value in plan.records[:] if not _is_valid(value)}
    assert {record.value for record in dead} == poison_values
    headers = dict(dead[0].headers)
    assert headers["x-dlq-original-topic"] == topic.encode()
    assert headers["x-dlq-consumer-group"] == group.encode()

    def total(result: str) -> float:
        value = metrics.registry.get_sample_value("stream_indexer_items_total", {"result": result})
        return value or 0.0

    finished = sum(total(r) for r in ("indexed", "deleted", "stale", "dead_lettered"))
    assert finished == len(plan.records)
    assert total("dead_lettered") == plan.poison
    assert total("stale") > 0
    dlq_writes = {
        store: sum(
            metrics.registry.get_sample_value(
                "stream_indexer_dlq_writes_total", {"store": store, "error_class": error_class}
            )
            or 0.0
            for error_class in ("undecodable", "schema_invalid")
        )
        for store in ("postgres", "kafka")
    }
    assert dlq_writes == {"postgres": plan.poison, "kafka": plan.poison}


async def test_a_drained_backlog_is_committed_without_waiting_for_the_interval(
    kafka_bootstrap: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=2)
    plan = plan_events(300, listings=60, seed=5, poison_every=0)
    # the timer alone would commit ten minutes from now
    settings = settings_for(topic, **{"kafka.commit_interval_ms": 600_000})
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(
            lambda: service_caught_up(service, ends),
            within_s=60,
            what="the drained partitions to be committed",
        )
        committed = await committed_offsets(
            kafka_bootstrap, settings.kafka.group_id, topic, partitions=2
        )
        assert {p: committed[p] for p in ends} == ends


def _is_valid(value: bytes | None) -> bool:
    from stream_indexer.errors import PoisonRecordError
    from stream_indexer.pipeline.decode import decode_event

    try:
        decode_event(None, value, max_bytes=1 << 20)
    except PoisonRecordError:
        return False
    return True


async def test_thin_events_load_from_the_source_table_and_missing_rows_delete(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=2)
    plan = plan_events(400, listings=80, seed=5, thin_ratio=0.5, poison_every=0)
    assert plan.thin > 0
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            """CREATE TABLE listings (
                id bigint PRIMARY KEY, title text, price numeric, status text,
                updated_at timestamptz, created_at timestamptz, user_id bigint,
                category_id bigint, description text, condition text, currency text,
                location jsonb, city text, country text, attributes jsonb, images jsonb,
                views_count bigint)"""
        )
        rows = [
            (
                lid,
                d["title"],
                d["price"],
                d["status"],
                d["updated_at"],
                d["created_at"],
                d["user_id"],
                d["category_id"],
                d["description"],
                d["condition"],
                d["currency"],
                orjson.dumps(d["location"]).decode(),
                d["city"],
                d["country"],
                orjson.dumps(d["attributes"]).decode(),
                orjson.dumps(d["images"]).decode(),
                d["views_count"],
            )
            for lid, d in plan.source_rows.items()
            if plan.expected.get(lid) is not None
        ]
        await conn.executemany(
            """INSERT INTO listings VALUES ($1,$2,$3,$4,$5::text::timestamptz,
               $6::text::timestamptz,$7,$8,$9,$10,$11,$12::jsonb,$13,$14,$15::jsonb,$16::jsonb,$17)""",
            rows,
        )
    finally:
        await conn.close()
    settings = settings_for(topic)
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="catch-up")
    # A thin event whose listing is deleted in the source has no row: it must be deleted.
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


async def test_stop_commits_what_is_done_and_restart_resumes(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=PARTITIONS)
    plan = plan_events(8_000, listings=2_000, seed=3)
    settings = settings_for(
        topic,
        **SLOW_PIPELINE,
        **{"kafka.commit_interval_ms": 50},
    )
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    service = IndexerService(settings, Metrics(CollectorRegistry()))
    await service.start()
    await wait_for(lambda: _any_committed(service), within_s=60, what="a first commit", step=0.05)
    await service.stop()
    stopped_at = {tp.partition: offset for tp, offset in service.committed_offsets().items()}
    assert stopped_at, "the service committed nothing before it stopped"
    in_group = await committed_offsets(kafka_bootstrap, settings.kafka.group_id, topic, PARTITIONS)
    assert {p: in_group[p] for p in stopped_at} == stopped_at
    assert sum(stopped_at.values()) < sum(ends.values()), "stopped too late to test a resume"
    fast = settings.model_copy(update={"batch": type(settings.batch)()})
    async with IndexerService(fast, Metrics(CollectorRegistry())) as again:
        await wait_for(lambda: service_caught_up(again, ends), within_s=90, what="catch-up")
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


async def test_a_partition_buffer_never_goes_over_its_record_bound(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    settings_for: SettingsFactory,
) -> None:
    """A backlog much larger than the buffers, fetched with a large `getmany`: each
    partition's buffer still holds at most `buffer_max_records` at any time."""
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=2)
    plan = plan_events(3_000, listings=500, seed=21, poison_every=0)
    bound = 100
    settings = settings_for(
        topic,
        **{
            "batch.max_records": 40,
            "batch.buffer_max_records": bound,
            "kafka.fetch_max_records": 5_000,
        },
    )
    peaks: dict[int, int] = {}
    submit = PartitionWorker.submit

    def recording_submit(worker: PartitionWorker, records: Sequence[Any]) -> None:
        submit(worker, records)
        peaks[worker.partition] = max(peaks.get(worker.partition, 0), worker.buffered)

    monkeypatch.setattr(PartitionWorker, "submit", recording_submit)
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=120, what="catch-up")
    assert set(peaks) == set(ends)
    assert max(peaks.values()) <= bound, peaks
    assert min(peaks.values()) > bound // 2, f"the buffers never filled: {peaks}"
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


async def test_a_paused_partition_resumes_when_its_worker_drains_it(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    settings_for: SettingsFactory,
) -> None:
    """Under a backlog the buffers fill and their partitions pause; each resumes when its
    worker takes the batch that drains it, not when the fetch loop next looks (a batch as
    large as the buffer empties it, so it has room for any fetch)."""
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=2)
    plan = plan_events(2_000, listings=400, seed=23, poison_every=0)
    settings = settings_for(topic, **{"batch.max_records": 40, "batch.buffer_max_records": 80})
    resumed: list[TopicPartition] = []
    batch_taken = FlowControl.batch_taken

    def recording(flow: FlowControl, tp: TopicPartition) -> None:
        was_paused = tp in flow.paused
        batch_taken(flow, tp)
        if was_paused and tp not in flow.paused:
            resumed.append(tp)

    monkeypatch.setattr(FlowControl, "batch_taken", recording)
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=120, what="catch-up")
    assert {tp.partition for tp in resumed} == set(ends), resumed
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


async def test_what_a_paused_partition_had_fetched_is_not_fetched_again(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    settings_for: SettingsFactory,
) -> None:
    """Each fetch brings far more records than the small buffer takes, so the partition
    pauses in the middle of nearly every fetch; the rest is kept for its resume (aiokafka
    alone would drop it and fetch it again), so every record crosses the wire once."""
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    plan = plan_events(2_000, listings=400, seed=29, poison_every=0)
    settings = settings_for(topic, **{"batch.max_records": 40, "batch.buffer_max_records": 80})
    fetched: list[int] = []  # records per fetch response
    memory_records = fetcher.MemoryRecords

    def counting(data: bytes) -> Any:
        batches = memory_records(data)
        count = 0
        while batches.has_next():
            batch = batches.next_batch()
            count += batch.next_offset - batch.base_offset
        fetched.append(count)
        return memory_records(data)

    monkeypatch.setattr(fetcher, "MemoryRecords", counting)
    pauses: list[TopicPartition] = []
    submitted = FlowControl.submitted

    def recording(flow: FlowControl, tp: TopicPartition, worker: PartitionWorker) -> None:
        was_paused = tp in flow.paused
        submitted(flow, tp, worker)
        if tp in flow.paused and not was_paused:
            pauses.append(tp)

    monkeypatch.setattr(FlowControl, "submitted", recording)
    ends = await produce_records(kafka_bootstrap, topic, plan.records)
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=120, what="catch-up")
    assert len(pauses) >= 10, pauses
    assert max(fetched) > 200, "each fetch should bring more than the buffer holds"
    assert sum(fetched) == len(plan.records), fetched
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


async def _any_committed(service: IndexerService) -> bool:
    await asyncio.sleep(0)
    return bool(service.committed_offsets())


async def test_dead_letters_are_redacted_when_configured(
    kafka_bootstrap: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    bad = {
        "event_id": "4b5e7c1e-0f7e-4c55-9d6a-1f1f1f1f1f1f",
        "action": "index",
        "listing_id": 5,
        "version": 1,
        "occurred_at": "2026-11-28T10:00:00Z",
        "data": {
            "id": 5,
            "title": "",
            "price": 1,
            "status": "active",
            "updated_at": "2026-11-28T10:00:00Z",
            "description": "call 555-0100",
            "city": "Berlin",
        },
    }
    settings = settings_for(
        topic, **{"dlq.redact_drop_fields": "description", "dlq.redact_hash_fields": "city"}
    )
    ends = await produce_records(kafka_bootstrap, topic, [(b"5", orjson.dumps(bad))])
    async with IndexerService(settings, Metrics(CollectorRegistry())) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="catch-up")
    (row,) = await dlq_rows(pg_dsn)
    assert row["error_class"] == "schema_invalid"
    stored = orjson.loads(row["value"])
    assert "description" not in stored["data"]
    assert stored["data"]["city"].startswith("sha256:")
    assert b"555-0100" not in row["value"] and "555-0100" not in str(row["data"])
    (record,) = await read_topic(kafka_bootstrap, f"{topic}.dlq", expected=1)
    assert record.value == row["value"]
