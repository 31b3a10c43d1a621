"""Helpers for reindex tests: a world (source table + topic + old index), the CLI as a child
process, and raw reads of physical indices (tombstones included)."""

from __future__ import annotations

import asyncio
import random
import subprocess
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from opensearchpy import AsyncOpenSearch

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import DemoPlan, produce_records
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.kafka_clients import create_producer
from stream_indexer.opensearch.aliases import alias_targets
from stream_indexer.settings import Settings
from support.pipeline import (
    every_document,
    kill,
    service_caught_up,
    start_command,
    wait_exit,
    wait_for,
)
from support.source_table import create_source_table, delete_rows, upsert_rows

#: fast settings for a reindex child process
FAST_REINDEX: dict[str, Any] = {
    "reindex.probe_interval_s": 0.3,
    "reindex.progress_interval_s": 1.0,
    "reindex.catchup_max_lag": 0,
}


async def seed_source(pg_dsn: str, plan: DemoPlan) -> None:
    """The source table holding each live listing of `plan` at its newest version."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await create_source_table(conn)
        rows = [(data, plan.expected_versions[lid]) for lid, data in plan.live_listings.items()]
        await upsert_rows(conn, rows)
    finally:
        await conn.close()


async def index_through_service(settings: Settings, records: Any) -> dict[int, int]:
    """Produce `records` and let an in-process indexer index them all; the end offsets."""
    ends = await produce_records(settings.kafka.bootstrap_servers, settings.kafka.topic, records)
    async with IndexerService(settings) as service:
        await wait_for(
            lambda: service_caught_up(service, ends), within_s=90, what="the indexer to catch up"
        )
    return ends


def reindex_process(settings: Settings, *args: str, log_path: str) -> subprocess.Popen[bytes]:
    return start_command(settings, "reindex", *args, log_path=log_path)


async def reindex(settings: Settings, *args: str, log_path: str, within_s: float = 120) -> int:
    """Run `stream-indexer reindex ARGS` to its end; its exit code."""
    process = reindex_process(settings, *args, log_path=log_path)
    try:
        return await wait_exit(process, within_s)
    finally:
        kill(process)


async def alias_indices(url: str, alias: str) -> list[str]:
    client = AsyncOpenSearch(hosts=[url])
    try:
        return await alias_targets(client, alias)
    finally:
        await client.close()


async def raw_documents(url: str, index: str) -> dict[int, dict[str, Any]]:
    """Every document of a physical index (tombstones too), by listing id."""
    return await every_document(url, index, with_version=True)


async def run_row(pg_dsn: str) -> dict[str, Any] | None:
    """The latest reindex run row."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM stream_indexer_reindex_runs ORDER BY id DESC")
        return None if row is None else dict(row)
    finally:
        await conn.close()


class LoadProducer:
    """Creates, updates, out-of-order (stale) versions and deletes, each written to the
    source table first and then emitted, as an application does; tracks what the index
    must end up holding."""

    def __init__(self, settings: Settings, pg_dsn: str, plan: DemoPlan, *, seed: int = 5) -> None:
        self._settings = settings
        self._dsn = pg_dsn
        self.expected: dict[int, dict[str, Any] | None] = dict(plan.expected)
        self.versions: dict[int, int] = dict(plan.expected_versions)
        self.deletes = 0
        self.created: list[int] = []
        self._rng = random.Random(seed)
        self._next_id = 500_000
        self.stop = asyncio.Event()

    def plan(self) -> DemoPlan:
        return DemoPlan([], dict(self.expected), dict(self.versions), 0, 0, 0, 0)

    def _event(self) -> tuple[int, int, str, dict[str, Any] | None, bool]:
        """(listing id, version, action, data, changes the source)."""
        rng, now = self._rng, datetime.now(UTC)
        roll = rng.random()
        live = [lid for lid, data in self.expected.items() if data is not None]
        if roll < 0.25 or not live:
            self._next_id += 1
            lid = self._next_id
            self.created.append(lid)
            return lid, 1_000, "index", listing_data(rng, lid, now), True
        lid = rng.choice(live)
        if roll < 0.35:
            return lid, self.versions[lid] + rng.randint(1, 100), "delete", None, True
        if roll < 0.45:  # an out-of-order, older version: must never win
            return lid, self.versions[lid] - 1, "index", listing_data(rng, lid, now), False
        return (
            lid,
            self.versions[lid] + rng.randint(1, 100),
            "index",
            listing_data(rng, lid, now),
            True,
        )

    async def run(self, per_second: float = 150.0) -> None:
        producer = create_producer(
            None,
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
        )
        conn = await asyncpg.connect(self._dsn)
        await producer.start()
        try:
            while not self.stop.is_set():
                for _ in range(max(1, int(per_second / 10))):
                    lid, version, action, data, changes = self._event()
                    if changes:
                        if action == "delete":
                            await delete_rows(conn, [lid])
                            self.deletes += 1
                        else:
                            await upsert_rows(conn, [(data or {}, version)])
                        self.expected[lid], self.versions[lid] = data, version
                    value = event_bytes(lid, version, action, data, datetime.now(UTC), self._rng)
                    await producer.send_and_wait(
                        self._settings.kafka.topic, value=value, key=str(lid).encode()
                    )
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()
            await conn.close()

    async def end_offsets(self) -> dict[int, int]:
        """partition -> end offset, from a fetch (what the pods must reach)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka.bootstrap_servers, group_id=None
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(self._settings.kafka.topic, p)
                for p in sorted(consumer.partitions_for_topic(self._settings.kafka.topic) or [])
            ]
            if not tps:
                await consumer.topics()
                tps = [
                    TopicPartition(self._settings.kafka.topic, p)
                    for p in sorted(consumer.partitions_for_topic(self._settings.kafka.topic) or [])
                ]
            consumer.assign(tps)
            for tp in tps:
                await consumer.seek_to_beginning(tp)
            ends: dict[int, int] = {}
            while len(ends) < len(tps):
                await consumer.getmany(timeout_ms=200, max_records=1)
                for tp in tps:
                    hw = consumer.highwater(tp)
                    if hw is not None:
                        ends[tp.partition] = hw
            return ends
        finally:
            await consumer.stop()
