"""`stream-indexer reindex` against the real servers: backfill, tombstones, cutover, rollback."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.pipeline import assert_index_matches, prepare_pipeline
from support.reindex import (
    FAST_REINDEX,
    alias_indices,
    index_through_service,
    raw_documents,
    reindex,
    run_row,
    seed_source,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.devtools.demo import DemoPlan, plan_events
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.settings import Settings

PARTITIONS = 3
pytestmark = pytest.mark.slow


async def _world(
    settings_for: SettingsFactory, topic_factory: TopicFactory, pg_dsn: str, **extra: object
) -> tuple[Settings, DemoPlan]:
    """An old index built by the indexer from events, and the source table those events
    describe (each live listing at its newest version)."""
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=PARTITIONS)
    settings = settings_for(topic, **{**FAST_REINDEX, **extra})
    plan = plan_events(900, listings=300, seed=11, poison_every=0, delete_ratio=0.15)
    await seed_source(pg_dsn, plan)
    await index_through_service(settings, plan.records)
    return settings, plan


def _deleted(plan: DemoPlan) -> list[int]:
    return sorted(lid for lid, data in plan.expected.items() if data is None)


async def test_run_from_postgres_rebuilds_exactly_keeps_tombstones_and_moves_both_aliases(
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings, plan = await _world(settings_for, topic_factory, pg_dsn)
    alias = settings.opensearch.index
    old = f"{alias}_v1"
    assert await alias_indices(opensearch_url, alias) == [old]

    code = await reindex(settings, "run", "--grace-s", "0.2", log_path=str(tmp_path / "r.log"))
    assert code == 0, (tmp_path / "r.log").read_text()[-3000:]

    new = f"{alias}_v2"
    assert await alias_indices(opensearch_url, alias) == [new]
    assert await alias_indices(opensearch_url, f"{alias}_write") == [new]
    await assert_index_matches(opensearch_url, alias, plan)
    rebuilt = await raw_documents(opensearch_url, new)
    kept = await raw_documents(opensearch_url, old)  # the old index is still there
    assert set(kept) == set(rebuilt)
    for listing_id, version in plan.expected_versions.items():
        assert rebuilt[listing_id]["_version"] == version
        assert bool(rebuilt[listing_id].get("deleted")) == (plan.expected[listing_id] is None)
    deleted = _deleted(plan)
    assert deleted and all(rebuilt[lid]["deleted"] for lid in deleted)
    row = await run_row(pg_dsn)
    assert row is not None
    assert (row["phase"], row["rows_done"], row["rows_total"]) == (
        "done",
        len(plan.live_listings),
        len(plan.live_listings),
    )
    assert row["tombstones_carried"] == len(deleted)

    # a late, stale event for a listing deleted before the reindex, after the cutover
    victim = deleted[0]
    rng = random.Random(3)
    stale = event_bytes(
        victim,
        plan.expected_versions[victim] - 1,
        "index",
        listing_data(rng, victim, datetime.now(UTC)),
        datetime.now(UTC),
        rng,
    )
    fresh_id = 777_777
    fresh = event_bytes(
        fresh_id, 5, "index", listing_data(rng, fresh_id, datetime.now(UTC)), datetime.now(UTC), rng
    )
    await index_through_service(settings, [(str(victim).encode(), stale), (b"777777", fresh)])
    after = await raw_documents(opensearch_url, new)
    assert after[victim]["deleted"] is True, "a stale event resurrected a deleted listing"
    assert after[fresh_id]["_version"] == 5, "the indexer did not write the new index"
    assert fresh_id not in await raw_documents(opensearch_url, old)
