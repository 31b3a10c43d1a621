"""`reindex run` while two indexer pods index a live stream and readers search the alias."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from opensearchpy import AsyncOpenSearch
from support.pipeline import (
    assert_index_matches,
    caught_up,
    committed_offsets,
    kill,
    prepare_pipeline,
    start_indexer,
    wait_for,
)
from support.reindex import (
    FAST_REINDEX,
    LoadProducer,
    alias_indices,
    index_through_service,
    raw_documents,
    reindex,
    run_row,
    seed_source,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.devtools.demo import plan_events

PARTITIONS = 3
pytestmark = pytest.mark.slow


class Reader:
    """Searches the alias in a loop; remembers every error and every count too low."""

    def __init__(self, url: str, alias: str, load: LoadProducer, baseline: int) -> None:
        self._url, self._alias, self._load = url, alias, load
        self.baseline = baseline
        self.searches = 0
        self.errors: list[str] = []
        self.too_low: list[tuple[int, int]] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        client = AsyncOpenSearch(hosts=[self._url], timeout=10)
        try:
            while not self.stop.is_set():
                floor = self.baseline - self._load.deletes  # read before the search
                try:
                    found = await client.search(
                        index=self._alias,
                        body={"size": 0, "track_total_hits": True, "query": {"match_all": {}}},
                    )
                except Exception as exc:
                    self.errors.append(repr(exc))
                else:
                    count = int(found["hits"]["total"]["value"])
                    if count < floor:
                        self.too_low.append((count, floor))
                self.searches += 1
                await asyncio.sleep(0.02)
        finally:
            await client.close()


async def test_reindex_under_load_with_two_pods_readers_never_miss_a_document(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
    tmp_path: Path,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=PARTITIONS)
    settings = settings_for(
        topic,
        **{**FAST_REINDEX, "reindex.page_size": 20, "reindex.min_page_size": 10},
        **{"kafka.commit_interval_ms": 100},
    )
    alias = settings.opensearch.index
    plan = plan_events(900, listings=300, seed=17, poison_every=0, delete_ratio=0.1)
    await seed_source(pg_dsn, plan)
    initial = await index_through_service(settings, plan.records)
    baseline = len(plan.live_listings)

    pods = [start_indexer(settings, log_path=str(tmp_path / f"pod{n}.log")) for n in (1, 2)]
    load = LoadProducer(settings, pg_dsn, plan)
    reader = Reader(opensearch_url, alias, load, baseline)
    tasks = [asyncio.create_task(load.run()), asyncio.create_task(reader.run())]
    try:
        # both pods consume the live stream before the reindex begins
        await wait_for(
            lambda: _consuming(kafka_bootstrap, settings.kafka.group_id, topic, initial),
            within_s=60,
            what="the pods to consume the load",
        )
        log = tmp_path / "reindex.log"
        code = await reindex(
            settings,
            "run",
            "--source",
            "postgres",
            "--max-rate",
            "60",
            "--grace-s",
            "1",
            log_path=str(log),
            within_s=180,
        )
        assert code == 0, _text(log)[-3000:]
        assert await alias_indices(opensearch_url, alias) == [f"{alias}_v2"]
        before = len(load.created)
        await asyncio.sleep(1.0)  # the load goes on after the cutover: pods write the new index
        load.stop.set()
        await tasks[0]
        assert len(load.created) > before
        ends = await load.end_offsets()
        await wait_for(
            lambda: caught_up(kafka_bootstrap, settings.kafka.group_id, topic, ends, PARTITIONS),
            within_s=90,
            what="the pods to index the whole stream",
        )
        reader.stop.set()
        await tasks[1]
    finally:
        load.stop.set()
        reader.stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        for pod in pods:
            kill(pod)

    assert reader.searches > 20
    assert reader.errors == [], reader.errors[:3]
    assert reader.too_low == [], reader.too_low[:3]
    expected = load.plan()
    await assert_index_matches(opensearch_url, alias, expected)
    rebuilt = await raw_documents(opensearch_url, f"{alias}_v2")
    assert {lid: doc["_version"] for lid, doc in rebuilt.items()} == expected.expected_versions
    assert all(
        bool(rebuilt[lid].get("deleted")) == (data is None)
        for lid, data in expected.expected.items()
    )
    old = await raw_documents(opensearch_url, f"{alias}_v1")  # kept for a rollback
    assert load.created[-1] in rebuilt and load.created[-1] not in old
    row = await run_row(pg_dsn)
    assert row is not None and row["phase"] == "done"


async def _consuming(bootstrap: str, group: str, topic: str, initial: dict[int, int]) -> bool:
    """The live group has committed past the initial events on every partition."""
    committed = await committed_offsets(bootstrap, group, topic, PARTITIONS)
    return all(committed.get(p, -1) > end for p, end in initial.items())


def _text(path: Path) -> str:
    return path.read_text()
