"""Helpers for reindex tests: a world (source table + topic + old index), the CLI as a child
process, and raw reads of physical indices (tombstones included)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import asyncpg
from opensearchpy import AsyncOpenSearch

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import DemoPlan, produce_records
from stream_indexer.settings import Settings
from support.pipeline import service_caught_up, settings_env, wait_exit, wait_for
from support.source_table import create_source_table, upsert_rows

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
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process by the caller
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "stream_indexer", "reindex", *args],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()


async def reindex(settings: Settings, *args: str, log_path: str, within_s: float = 120) -> int:
    """Run `stream-indexer reindex ARGS` to its end; its exit code."""
    process = reindex_process(settings, *args, log_path=log_path)
    try:
        return await wait_exit(process, within_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def alias_indices(url: str, alias: str) -> list[str]:
    client = AsyncOpenSearch(hosts=[url])
    try:
        found = await client.indices.get_alias(name=alias, ignore=404)
        return sorted(i for i, spec in found.items() if alias in spec.get("aliases", {}))
    finally:
        await client.close()


async def raw_documents(url: str, index: str) -> dict[int, dict[str, Any]]:
    """Every document of a physical index (tombstones too), by listing id."""
    client = AsyncOpenSearch(hosts=[url], timeout=60)
    docs: dict[int, dict[str, Any]] = {}
    try:
        await client.indices.refresh(index=index)
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": 5000, "sort": [{"id": "asc"}], "version": True}
            if after is not None:
                body["search_after"] = after
            hits = (await client.search(index=index, body=body))["hits"]["hits"]
            if not hits:
                return docs
            for hit in hits:
                docs[int(hit["_id"])] = {**hit["_source"], "_version": hit["_version"]}
            after = hits[-1]["sort"]
    finally:
        await client.close()


async def run_row(pg_dsn: str) -> dict[str, Any] | None:
    """The latest reindex run row."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM stream_indexer_reindex_runs ORDER BY id DESC")
        return None if row is None else dict(row)
    finally:
        await conn.close()
