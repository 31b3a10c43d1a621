"""`stream-indexer reindex` against the real servers: backfill, tombstones, cutover, rollback."""

from __future__ import annotations

import json
import random
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opensearchpy import AsyncOpenSearch
from support.pipeline import (
    SLOW_PIPELINE,
    assert_index_matches,
    committed_offsets,
    kill,
    prepare_pipeline,
    service_caught_up,
    wait_exit,
    wait_for,
)
from support.reindex import (
    FAST_REINDEX,
    alias_indices,
    index_through_service,
    raw_documents,
    reindex,
    reindex_process,
    run_row,
    seed_source,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import DemoPlan, plan_events, produce_records
from stream_indexer.devtools.synthetic import event_bytes, listing_data
from stream_indexer.opensearch.mapping import index_body
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
    assert code == 0, _text(tmp_path / "r.log")[-3000:]

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
    status_log = tmp_path / "status.log"
    assert await reindex(settings, "status", "--json", log_path=str(status_log)) == 0
    status = json.loads(_text(status_log).strip().splitlines()[-1])
    assert status["run"]["phase"] == "done" and status["run"]["new_index"] == new
    assert status["run"]["rows_done"] == status["run"]["rows_total"] == len(plan.live_listings)

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


def _mapping_with_city_text(path: Path) -> Path:
    body = index_body()
    body["mappings"]["properties"]["city"] = {
        "type": "keyword",
        "fields": {"text": {"type": "text"}},
    }
    body["settings"]["index"]["refresh_interval"] = "5s"
    path.write_text(json.dumps(body))
    return path


async def _city_text_hits(url: str, alias: str, word: str) -> int:
    client = AsyncOpenSearch(hosts=[url])
    try:
        await client.indices.refresh(index=alias)
        found = await client.search(index=alias, body={"query": {"match": {"city.text": word}}})
        return int(found["hits"]["total"]["value"])
    finally:
        await client.close()


async def _refresh_and_replicas(url: str, index: str) -> tuple[str | None, str | None]:
    client = AsyncOpenSearch(hosts=[url])
    try:
        found = (await client.indices.get_settings(index=index))[index]["settings"]["index"]
        return found.get("refresh_interval"), found.get("number_of_replicas")
    finally:
        await client.close()


async def test_mapping_change_is_searchable_after_cutover_and_rollback_restores_the_old_one(
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings, plan = await _world(settings_for, topic_factory, pg_dsn)
    alias = settings.opensearch.index
    logs = str(tmp_path / "r.log")
    bad = tmp_path / "bad.json"
    bad.write_text('{"mappings": {"properties": {"title": {"type": "text"}}}}')
    assert await reindex(settings, "run", "--mapping", str(bad), log_path=logs) == 2
    assert "--mapping" in _text(logs)
    assert await run_row(pg_dsn) is None
    refused = tmp_path / "refused.json"
    refused.write_text(
        json.dumps(
            {
                "mappings": {
                    "properties": {
                        f: {"type": "no_such_type"} for f in ("id", "version", "deleted")
                    }
                }
            }
        )
    )
    assert await reindex(settings, "run", "--mapping", str(refused), log_path=logs) == 1
    failed = await run_row(pg_dsn)
    assert failed is not None and failed["phase"] == "failed" and failed["error"]

    city = next(iter(plan.live_listings.values()))["city"]
    word = city.split()[0].lower()
    assert await _city_text_hits(opensearch_url, alias, word) == 0
    mapping = _mapping_with_city_text(tmp_path / "mapping.json")
    assert await reindex(settings, "start", "--mapping", str(mapping), log_path=logs) == 0
    # filled without refreshes or replicas; its own settings only just before the cutover
    assert await _refresh_and_replicas(opensearch_url, f"{alias}_v2") == ("-1", "0")
    assert await reindex(settings, "cutover", "--grace-s", "0.2", log_path=logs) == 0
    assert await _refresh_and_replicas(opensearch_url, f"{alias}_v2") == ("5s", "0")
    assert await _city_text_hits(opensearch_url, alias, word) > 0

    # pods write the new index after the cutover; a rollback must not lose that
    rng = random.Random(8)
    late_id = 888_888
    late = event_bytes(
        late_id, 9, "index", listing_data(rng, late_id, datetime.now(UTC)), datetime.now(UTC), rng
    )
    await index_through_service(settings, [(b"888888", late)])
    assert late_id in await raw_documents(opensearch_url, f"{alias}_v2")

    assert await reindex(settings, "rollback", "--grace-s", "0.2", log_path=logs) == 0
    assert await alias_indices(opensearch_url, alias) == [f"{alias}_v1"]
    assert await alias_indices(opensearch_url, f"{alias}_write") == [f"{alias}_v1"]
    assert await _city_text_hits(opensearch_url, alias, word) == 0
    assert (await raw_documents(opensearch_url, f"{alias}_v1"))[late_id]["_version"] == 9
    row = await run_row(pg_dsn)
    assert row is not None and row["phase"] == "rolled_back"

    assert await reindex(settings, "cleanup", "--keep", "0", log_path=logs) == 0
    client = AsyncOpenSearch(hosts=[opensearch_url])
    try:
        assert not await client.indices.exists(index=f"{alias}_v2")
        assert await client.indices.exists(index=f"{alias}_v1")
    finally:
        await client.close()


async def test_a_second_run_is_refused_while_one_runs_and_abort_deletes_its_index(
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings, _plan = await _world(
        settings_for,
        topic_factory,
        pg_dsn,
        **{"reindex.page_size": 10, "reindex.min_page_size": 10},
    )
    alias = settings.opensearch.index
    first = reindex_process(settings, "start", "--max-rate", "40", log_path=str(tmp_path / "1.log"))
    try:
        await wait_for(
            lambda: _rows_done_at_least(pg_dsn, 20), within_s=60, what="the backfill to begin"
        )
        second_log = tmp_path / "2.log"
        assert await reindex(settings, "run", log_path=str(second_log)) == 4
        assert "another reindex" in _text(second_log)
        assert await reindex(settings, "abort", log_path=str(tmp_path / "a.log")) == 0
        assert await wait_exit(first, 60) == 1
    finally:
        kill(first)
    assert "aborted" in _text(tmp_path / "1.log")
    row = await run_row(pg_dsn)
    assert row is not None and row["phase"] == "aborted"
    assert 0 < row["rows_done"] < row["rows_total"]
    client = AsyncOpenSearch(hosts=[opensearch_url])
    try:
        assert not await client.indices.exists(index=f"{alias}_v2")
    finally:
        await client.close()
    assert await alias_indices(opensearch_url, alias) == [f"{alias}_v1"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()


async def _rows_done_at_least(pg_dsn: str, rows: int) -> bool:
    row = await run_row(pg_dsn)
    return row is not None and row["rows_done"] >= rows


def _text(path: Path | str) -> str:
    return Path(path).read_text()


def _merged(*plans: DemoPlan) -> DemoPlan:
    expected: dict[int, Any] = {}
    versions: dict[int, int] = {}
    for plan in plans:
        expected.update(plan.expected)
        versions.update(plan.expected_versions)
    return DemoPlan([], expected, versions, 0, 0, 0, 0)


def _started_from(log: Path) -> int:
    """The committed total the catch-up group started from, per the reindex's own log."""
    for line in _text(log).splitlines():
        if line.startswith("{") and "catch-up group starts" in line:
            return int(json.loads(line)["committed_total"])
    raise AssertionError(f"no catch-up start in {log}")


async def test_sigkill_mid_backfill_and_mid_catch_up_resumes_to_the_exact_index(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings, plan = await _world(
        settings_for,
        topic_factory,
        pg_dsn,
        **{"reindex.page_size": 10, "reindex.min_page_size": 10, **SLOW_PIPELINE},
    )
    alias, topic = settings.opensearch.index, settings.kafka.topic
    run = ["run", "--grace-s", "0.2", "--max-rate", "60"]
    first = reindex_process(settings, *run, log_path=str(tmp_path / "1.log"))
    try:
        await wait_for(lambda: _rows_done_at_least(pg_dsn, 40), within_s=60, what="backfill")
        first.send_signal(signal.SIGKILL)
        await wait_exit(first, 10)
    finally:
        kill(first)
    killed = await run_row(pg_dsn)
    assert killed is not None and killed["phase"] == "backfill"
    assert 0 < killed["rows_done"] < killed["rows_total"]

    # events the live group has not seen: the catch-up group must replay them all
    more = plan_events(4_000, listings=800, seed=12, poison_every=0, start_id=50_000)
    ends = await produce_records(kafka_bootstrap, topic, more.records)
    live = settings.model_copy(deep=True)
    live.batch.max_records, live.opensearch.max_in_flight_bulks = 1_000, 4
    async with IndexerService(live) as pods:
        await wait_for(lambda: service_caught_up(pods, ends), within_s=60, what="the live group")
        second = reindex_process(settings, *run, log_path=str(tmp_path / "2.log"))
        try:
            await wait_for(
                lambda: _catching_up(pg_dsn, kafka_bootstrap, settings, ends),
                within_s=90,
                what="the catch-up group mid-way",
                step=0.05,
            )
            second.send_signal(signal.SIGKILL)
            await wait_exit(second, 10)
        finally:
            kill(second)
        at_kill = sum(
            max(0, o)
            for o in (
                await committed_offsets(
                    kafka_bootstrap, _catchup_group(settings), topic, PARTITIONS
                )
            ).values()
        )
        third_log = tmp_path / "3.log"
        third = await reindex(settings, *run, log_path=str(third_log), within_s=150)
        assert third == 0, _text(third_log)[-3000:]
        assert pods.running
    assert _started_from(third_log) >= at_kill > 0, "the catch-up started over"
    row = await run_row(pg_dsn)
    assert row is not None and row["id"] == killed["id"] and row["resumes"] == 2
    assert (row["phase"], row["rows_done"]) == ("done", row["rows_total"]), "backfill restarted"
    assert await alias_indices(opensearch_url, alias) == [f"{alias}_v2"]
    client = AsyncOpenSearch(hosts=[opensearch_url])
    try:
        assert not await client.indices.exists(index=f"{alias}_v3")
    finally:
        await client.close()
    await assert_index_matches(opensearch_url, alias, _merged(plan, more))


def _catchup_group(settings: Settings) -> str:
    return f"{settings.kafka.group_id}.reindex.1"


async def _catching_up(pg_dsn: str, bootstrap: str, settings: Settings, ends: Any) -> bool:
    row = await run_row(pg_dsn)
    if row is None or row["phase"] != "catchup":
        return False
    committed = await committed_offsets(
        bootstrap, _catchup_group(settings), settings.kafka.topic, PARTITIONS
    )
    done = sum(max(0, o) for o in committed.values())
    started = sum(json.loads(row["live_offsets"]).values())
    return bool(started < done < sum(ends.values()))


async def test_source_topic_rebuilds_the_same_exact_index(
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings, plan = await _world(settings_for, topic_factory, pg_dsn)
    alias = settings.opensearch.index
    log = tmp_path / "r.log"
    code = await reindex(
        settings, "run", "--source", "topic", "--grace-s", "0.2", log_path=str(log)
    )
    assert code == 0, _text(log)[-3000:]
    assert await alias_indices(opensearch_url, alias) == [f"{alias}_v2"]
    await assert_index_matches(opensearch_url, alias, plan)
    rebuilt = await raw_documents(opensearch_url, f"{alias}_v2")
    assert {lid: doc["_version"] for lid, doc in rebuilt.items()} == plan.expected_versions
    row = await run_row(pg_dsn)
    assert row is not None and (row["source"], row["rows_done"]) == ("topic", 0)
