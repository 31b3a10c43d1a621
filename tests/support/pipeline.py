"""Helpers for pipeline tests: settings for a test's names, index reads, group offsets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from opensearchpy import AsyncOpenSearch

from stream_indexer.devtools.demo import DemoPlan
from stream_indexer.models import Listing
from stream_indexer.opensearch.mapping import METADATA_FIELDS
from stream_indexer.settings import Settings, load_settings


async def prepare_pipeline(
    topic_factory: Callable[..., Awaitable[str]], pg_dsn: str, *, partitions: int
) -> str:
    """A fresh topic with its `.dlq` topic, and the migrated DLQ table; returns the topic."""
    from stream_indexer.app.migrate import migrate_up

    topic = await topic_factory(partitions=partitions)
    await topic_factory(partitions=1, name=f"{topic}.dlq")
    await migrate_up(pg_dsn)
    return topic


#: small batches and one bulk request at a time: slow enough to stop or kill mid-stream
SLOW_PIPELINE: dict[str, Any] = {
    "batch.max_records": 50,
    "batch.buffer_max_records": 100,
    "opensearch.max_in_flight_bulks": 1,
}


def pipeline_settings(
    *, bootstrap: str, opensearch_url: str, pg_dsn: str, topic: str, name: str, **extra: Any
) -> Settings:
    """Settings for one test: its own topic, group, index and DLQ topic; fast timings."""
    overrides: dict[str, Any] = {
        "kafka.bootstrap_servers": bootstrap,
        "kafka.topic": topic,
        "kafka.group_id": f"{name}-group",
        "kafka.enable_idempotence": False,
        "kafka.session_timeout_ms": 6000,
        "kafka.commit_interval_ms": 200,
        "dlq.topic": f"{topic}.dlq",
        "opensearch.hosts": opensearch_url,
        "opensearch.index": f"{name}-listings",
        "postgres.dsn": pg_dsn,
        "metrics.enabled": False,
        "shutdown_timeout_s": 10,
        "rebalance_timeout_s": 10,
    }
    overrides.update(extra)
    return load_settings(overrides)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `stream-indexer run` subprocess use `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_INDEXER_")}
    data = settings.model_dump(mode="json")
    for section, values in data.items():
        if isinstance(values, dict):
            for field, value in values.items():
                if value is None:
                    continue
                text = ",".join(value) if isinstance(value, list) else str(value)
                env[f"STREAM_INDEXER_{section.upper()}__{field.upper()}"] = text
        elif values is not None:
            env[f"STREAM_INDEXER_{section.upper()}"] = str(values)
    env["STREAM_INDEXER_POSTGRES__DSN"] = settings.postgres.dsn.get_secret_value()
    env.pop("STREAM_INDEXER_SOURCE__DSN", None)
    return env


def start_indexer(settings: Settings, *, log_path: str) -> subprocess.Popen[bytes]:
    """`python -m stream_indexer run` as a child process, logging to `log_path`."""
    return start_command(settings, "run", log_path=log_path)


def start_command(settings: Settings, *args: str, log_path: str) -> subprocess.Popen[bytes]:
    """`python -m stream_indexer ARGS` as a child process, logging to `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process by the caller
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "stream_indexer", *args],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()


async def wait_exit(process: subprocess.Popen[bytes], within_s: float) -> int:
    """The child's exit code, waited for without blocking the event loop."""
    return await asyncio.wait_for(asyncio.to_thread(process.wait), within_s)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
        process.wait()


async def read_alias(opensearch_url: str, alias: str) -> dict[int, dict[str, Any]]:
    """Every document visible through the (tombstone-filtering) alias, by listing id."""
    return await every_document(opensearch_url, alias)


async def every_document(
    opensearch_url: str, index: str, *, with_version: bool = False
) -> dict[int, dict[str, Any]]:
    """Every document `index` (an alias or a physical index) shows, by listing id, paged
    by `id`; `with_version` adds each document's `_version`."""
    client = AsyncOpenSearch(hosts=[opensearch_url], timeout=60)
    docs: dict[int, dict[str, Any]] = {}
    try:
        await client.indices.refresh(index=index)
        search_after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": 5000, "sort": [{"id": "asc"}]}
            if with_version:
                body["version"] = True
            if search_after is not None:
                body["search_after"] = search_after
            page = await client.search(index=index, body=body)
            hits = page["hits"]["hits"]
            if not hits:
                return docs
            for hit in hits:
                extra = {"_version": hit["_version"]} if with_version else {}
                docs[int(hit["_id"])] = {**hit["_source"], **extra}
            search_after = hits[-1]["sort"]
    finally:
        await client.close()


def expected_documents(plan: DemoPlan) -> dict[int, dict[str, Any]]:
    """What the alias must show: each live listing's newest data as the indexer stores it."""
    expected: dict[int, dict[str, Any]] = {}
    for listing_id, data in plan.live_listings.items():
        document = orjson.loads(orjson.dumps(Listing.model_validate(data).to_document()))
        document["version"] = plan.expected_versions[listing_id]
        expected[listing_id] = document
    return expected


def comparable(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document without the fields that differ per write (time, event id)."""
    volatile = set(METADATA_FIELDS) - {"version"}
    return {k: v for k, v in document.items() if k not in volatile}


def normalise(document: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through the model so timestamp spellings compare equal."""
    fields = {k: v for k, v in document.items() if k not in METADATA_FIELDS}
    listing = orjson.loads(orjson.dumps(Listing.model_validate(fields).to_document()))
    listing["version"] = document.get("version")
    return dict(listing)


async def assert_index_matches(opensearch_url: str, alias: str, plan: DemoPlan) -> None:
    actual = await read_alias(opensearch_url, alias)
    expected = expected_documents(plan)
    assert set(actual) == set(expected), (
        f"{len(set(actual) - set(expected))} unexpected, "
        f"{len(set(expected) - set(actual))} missing listings"
    )
    mismatched = [lid for lid, doc in expected.items() if normalise(actual[lid]) != normalise(doc)]
    assert not mismatched, f"{len(mismatched)} listings differ, e.g. {mismatched[:5]}"


async def committed_offsets(
    bootstrap: str, group_id: str, topic: str, partitions: int
) -> dict[int, int]:
    """The group's committed offsets (without joining the group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        result: dict[int, int] = {}
        for partition in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, partition))
            result[partition] = -1 if offset is None else offset
        return result
    finally:
        await consumer.stop()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, within_s: float, what: str, step: float = 0.25
) -> None:
    """Poll an async condition (an external process's state has no event to await)."""
    deadline = time.monotonic() + within_s
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s:.0f} s waiting for {what}")
        await asyncio.sleep(step)


async def caught_up(
    bootstrap: str, group_id: str, topic: str, ends: Mapping[int, int], partitions: int
) -> bool:
    committed = await committed_offsets(bootstrap, group_id, topic, partitions)
    return all(committed.get(p, -1) >= end for p, end in ends.items())


async def service_caught_up(service: Any, ends: Mapping[int, int]) -> bool:
    """An in-process IndexerService has committed every partition up to its end offset."""
    committed = {tp.partition: offset for tp, offset in service.committed_offsets().items()}
    return all(committed.get(p, -1) >= end for p, end in ends.items())


async def dlq_rows(dsn: str, table: str = "opensearch_indexing_dlq") -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            f'SELECT * FROM "{table}" ORDER BY partition, "offset"'
        )
        return rows
    finally:
        await conn.close()


async def read_topic(
    bootstrap: str, topic: str, *, expected: int, within_s: float = 30
) -> list[Any]:
    """Read at least `expected` records from the start of `topic` (all partitions)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + within_s
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for chunk in batch.values():
                records.extend(chunk)
        # one more short poll to catch any records beyond `expected`
        for chunk in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(chunk)
        return records
    finally:
        await consumer.stop()
