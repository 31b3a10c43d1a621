"""Reindex figure: the backfill's documents per second against the bulk ceiling of the same rows.

A source table holds the plan's live listings at their newest versions; `stream-indexer
reindex run --source postgres` (a child process, default page size, no rate limit) rebuilds
an index from it, and its run row gives the backfill rate. The ceiling is
`ceilings.bulk_ceiling` on the very documents the backfill writes, in its order (by id),
pre-serialized, best of the batch / in-flight grid, measured in the same run.
Target: backfill >= 0.9 x ceiling.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench import ceilings
from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.demo import DemoPlan
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.models import Listing
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.pipeline.documents import versioned_write
from stream_indexer.reindex.backfill import reindex_event_id

_COLUMNS = (
    "id bigint PRIMARY KEY, title text, price numeric, status text, updated_at timestamptz, "
    "created_at timestamptz, user_id bigint, category_id bigint, description text, "
    "condition text, currency text, location jsonb, city text, country text, "
    "attributes jsonb, images jsonb, views_count bigint, version bigint NOT NULL"
)


async def _fill_source(dsn: str, table: str, plan: DemoPlan) -> int:
    rows = []
    for lid, data in plan.live_listings.items():
        doc = Listing.model_validate(data).model_dump(mode="json", exclude_none=True)
        rows.append((orjson.dumps(doc).decode(), plan.expected_versions[lid]))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TABLE {table} ({_COLUMNS})")
        await conn.executemany(
            f"INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table}, "
            "$1::jsonb || jsonb_build_object('version', $2::bigint))",
            rows,
        )
    finally:
        await conn.close()
    return len(rows)


def _writes(plan: DemoPlan) -> list[PendingWrite]:
    indexed_at = datetime.now(UTC).isoformat()
    return [
        versioned_write(
            lid,
            plan.expected_versions[lid],
            reindex_event_id(1, lid, plan.expected_versions[lid]),
            Listing.model_validate(data).to_document(),
            indexed_at,
        )
        for lid, data in sorted(plan.live_listings.items())
    ]


def _run_reindex(env: dict[str, str], log_path: Path) -> int:
    with log_path.open("ab") as log:
        return subprocess.run(
            [sys.executable, "-m", "stream_indexer", "reindex", "run", "--grace-s", "0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode


async def reindex_backfill(
    endpoints: StackEndpoints, plan: DemoPlan, *, rid: str, logs: Path
) -> dict[str, Any]:
    table = f"bench_{rid}_listings"
    rows = await _fill_source(endpoints.postgres_dsn, table, plan)
    topic = f"bench-{rid}-rx"
    await ensure_topic(endpoints.kafka_bootstrap, topic, partitions=1)
    await ensure_topic(endpoints.kafka_bootstrap, f"{topic}.dlq", partitions=1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STREAM_INDEXER_")},
        "STREAM_INDEXER_KAFKA__BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
        "STREAM_INDEXER_KAFKA__TOPIC": topic,
        "STREAM_INDEXER_KAFKA__GROUP_ID": f"bench-{rid}-rx",
        "STREAM_INDEXER_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "STREAM_INDEXER_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "STREAM_INDEXER_OPENSEARCH__HOSTS": endpoints.opensearch_url,
        "STREAM_INDEXER_OPENSEARCH__INDEX": f"bench-{rid}-rx",
        "STREAM_INDEXER_POSTGRES__DSN": endpoints.postgres_dsn,
        "STREAM_INDEXER_SOURCE__TABLE": table,
        "STREAM_INDEXER_METRICS__ENABLED": "false",
        "STREAM_INDEXER_REINDEX__CATCHUP_MAX_LAG": "0",
        "STREAM_INDEXER_REINDEX__PROBE_INTERVAL_S": "0.5",
    }
    started = time.perf_counter()
    code = await asyncio.to_thread(_run_reindex, env, logs / "reindex.log")
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"reindex run exited {code}; see {logs / 'reindex.log'}")
    # the ceiling after the backfill: osmem pays for the indices a grid leaves behind
    ceiling = await ceilings.bulk_ceiling(
        endpoints.opensearch_url, _writes(plan), prefix=f"bench-{rid}-rxc"
    )
    conn = await asyncpg.connect(endpoints.postgres_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT rows_done, docs_per_s FROM stream_indexer_reindex_runs "
            "WHERE alias = $1 ORDER BY id DESC LIMIT 1",
            f"bench-{rid}-rx",
        )
    finally:
        await conn.close()
    assert row is not None
    rate = float(row["docs_per_s"] or 0.0)
    best = float(ceiling["events_per_s"])
    return {
        "rows": int(row["rows_done"]),
        "source_rows": rows,
        "events_per_s": round(rate, 1),
        "ceiling_docs_per_s": round(best, 1),
        "ceiling_best": ceiling.get("best"),
        "backfill_vs_bulk_ceiling": round(rate / best, 3) if best else None,
        "command_wall_s": round(wall, 2),
    }
