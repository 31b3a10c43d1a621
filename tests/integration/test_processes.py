"""`stream-indexer run` as real processes: SIGKILL and restart, SIGTERM, two group members."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support.pipeline import (
    SLOW_PIPELINE,
    assert_index_matches,
    caught_up,
    committed_offsets,
    dlq_rows,
    kill,
    prepare_pipeline,
    start_indexer,
    wait_exit,
    wait_for,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.devtools.demo import plan_events, produce_records
from stream_indexer.settings import Settings

PARTITIONS = 6
pytestmark = pytest.mark.slow


async def _prepare(
    settings_for: SettingsFactory, topic_factory: TopicFactory, pg_dsn: str, **extra: object
) -> Settings:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=PARTITIONS)
    return settings_for(topic, **{"kafka.commit_interval_ms": 100, **extra})


async def _committed_total(settings: Settings) -> int:
    offsets = await committed_offsets(
        settings.kafka.bootstrap_servers, settings.kafka.group_id, settings.kafka.topic, PARTITIONS
    )
    return sum(max(0, o) for o in offsets.values())


async def test_sigkill_mid_stream_then_restart_reaches_the_same_final_state(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    tmp_path: Path,
    settings_for: SettingsFactory,
) -> None:
    settings = await _prepare(
        settings_for,
        topic_factory,
        pg_dsn,
        **SLOW_PIPELINE,
    )
    plan = plan_events(8_000, listings=2_000, seed=21, poison_every=400)
    ends = await produce_records(kafka_bootstrap, settings.kafka.topic, plan.records)
    total = sum(ends.values())
    first = start_indexer(settings, log_path=str(tmp_path / "first.log"))
    try:
        await wait_for(
            lambda: _some_committed(settings), within_s=90, what="a first commit", step=0.1
        )
        first.send_signal(signal.SIGKILL)
        await wait_exit(first, 10)
    finally:
        kill(first)
    at_kill = await _committed_total(settings)
    assert 0 < at_kill < total, f"killed at {at_kill} of {total}: not mid-stream"

    second = start_indexer(settings, log_path=str(tmp_path / "second.log"))
    try:
        await wait_for(
            lambda: caught_up(
                kafka_bootstrap, settings.kafka.group_id, settings.kafka.topic, ends, PARTITIONS
            ),
            within_s=150,
            what="the restarted indexer to catch up",
        )
        second.send_signal(signal.SIGTERM)
        assert await wait_exit(second, 30) == 0
    finally:
        kill(second)
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)
    # re-delivered poison is upserted: still one row per poison record
    assert len(await dlq_rows(pg_dsn)) == plan.poison


async def _some_committed(settings: Settings) -> bool:
    return await _committed_total(settings) > 0


async def test_sigterm_exits_zero_with_everything_done_committed(
    kafka_bootstrap: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    tmp_path: Path,
    settings_for: SettingsFactory,
) -> None:
    settings = await _prepare(settings_for, topic_factory, pg_dsn)
    plan = plan_events(2_000, listings=500, seed=4)
    ends = await produce_records(kafka_bootstrap, settings.kafka.topic, plan.records)
    process = start_indexer(settings, log_path=str(tmp_path / "indexer.log"))
    try:
        await wait_for(
            lambda: caught_up(
                kafka_bootstrap, settings.kafka.group_id, settings.kafka.topic, ends, PARTITIONS
            ),
            within_s=90,
            what="catch-up",
        )
        process.send_signal(signal.SIGTERM)
        assert await wait_exit(process, 30) == 0
    finally:
        kill(process)
    log = (tmp_path / "indexer.log").read_text()
    assert "indexer stopped" in log
    committed = await committed_offsets(
        kafka_bootstrap, settings.kafka.group_id, settings.kafka.topic, PARTITIONS
    )
    assert {p: committed[p] for p in ends} == ends


async def test_two_members_split_partitions_and_one_leaving_keeps_the_index_exact(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    tmp_path: Path,
    settings_for: SettingsFactory,
) -> None:
    settings = await _prepare(
        settings_for,
        topic_factory,
        pg_dsn,
        **SLOW_PIPELINE,
    )
    a = start_indexer(settings, log_path=str(tmp_path / "a.log"))
    b = start_indexer(settings, log_path=str(tmp_path / "b.log"))
    try:
        try:
            await wait_for(
                lambda: _both_assigned(tmp_path),
                within_s=120,
                what="both members to get partitions",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_group_log(tmp_path)}") from None
        plan = plan_events(8_000, listings=2_000, seed=8)
        ends = await produce_records(kafka_bootstrap, settings.kafka.topic, plan.records)
        await wait_for(
            lambda: _some_committed(settings), within_s=60, what="a first commit", step=0.1
        )
        b.send_signal(signal.SIGTERM)
        assert await wait_exit(b, 40) == 0
        await wait_for(
            lambda: caught_up(
                kafka_bootstrap, settings.kafka.group_id, settings.kafka.topic, ends, PARTITIONS
            ),
            within_s=150,
            what="the remaining member to catch up",
        )
        a.send_signal(signal.SIGTERM)
        assert await wait_exit(a, 40) == 0
    finally:
        kill(a)
        kill(b)
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)


async def _both_assigned(tmp_path: Path) -> bool:
    """Each member logs its assignment; both must own a non-empty, disjoint share."""
    shares = [_assigned_partitions((tmp_path / f"{m}.log").read_text()) for m in ("a", "b")]
    return all(shares) and not (shares[0] & shares[1]) and len(shares[0] | shares[1]) == PARTITIONS


def _group_log(tmp_path: Path) -> str:
    """The members' group-membership lines, for a failure message."""
    keep = ("partitions assigned", "Joined", "Revoking", "rror", "SIGTERM", "stopped")
    lines = []
    for member in ("a", "b"):
        for line in (tmp_path / f"{member}.log").read_text().splitlines():
            if any(word in line for word in keep):
                lines.append(f"{member}: {line[:300]}")
    return "\n".join(lines[-40:])


def _assigned_partitions(log: str) -> set[int]:
    lines = [line for line in log.splitlines() if "partitions assigned" in line]
    if not lines:
        return set()
    import json

    record = json.loads(lines[-1])
    return {int(p) for p in str(record.get("partitions", "")).split(",") if p}
