"""The write alias on osmem: pods follow an atomic switch, old deployments gain the alias."""

from __future__ import annotations

import pytest
from opensearchpy import AsyncOpenSearch
from prometheus_client import CollectorRegistry
from support.pipeline import prepare_pipeline, service_caught_up, wait_for
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.devtools.demo import plan_events, produce_records
from stream_indexer.errors import ConfigError
from stream_indexer.observability.metrics import Metrics
from stream_indexer.opensearch.aliases import (
    alias_targets,
    create_next_index,
    switch,
    tombstones,
    versioned_indices,
)
from stream_indexer.opensearch.mapping import alias_actions, index_body, tombstone_document
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import Settings, load_settings

pytestmark = pytest.mark.integration


def _settings(opensearch_url: str, index: str, **extra: object) -> Settings:
    return load_settings(
        {
            "kafka.topic": "unused",
            "opensearch.hosts": opensearch_url,
            "opensearch.index": index,
            "postgres.dsn": "postgresql://unused@127.0.0.1:1/unused",
            **extra,
        }
    )


async def test_running_pods_follow_a_switch_with_no_restart_and_no_failed_item(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
) -> None:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=2)
    settings = settings_for(topic)
    alias, write_alias = settings.opensearch.index, settings.write_alias
    first = plan_events(300, listings=100, seed=1, poison_every=0, start_id=1)
    second = plan_events(300, listings=100, seed=2, poison_every=0, start_id=1_001)
    metrics = Metrics(CollectorRegistry())
    client = AsyncOpenSearch(hosts=[opensearch_url])
    try:
        async with IndexerService(settings, metrics) as service:
            ends = await produce_records(kafka_bootstrap, topic, first.records)
            await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="first")
            old = settings.physical_index
            new = await create_next_index(client, alias, index_body())
            assert new == f"{alias}_v2"
            await switch(client, alias, write_alias, old, new)
            ends = await produce_records(kafka_bootstrap, topic, second.records)
            await wait_for(lambda: service_caught_up(service, ends), within_s=60, what="second")
        assert await alias_targets(client, alias) == [new]
        assert await alias_targets(client, write_alias) == [new]
        assert await versioned_indices(client, alias) == [old, new]
        await client.indices.refresh(index=f"{old},{new}")
        in_old = await _ids(client, old)
        in_new = await _ids(client, new)
    finally:
        await client.close()
    assert in_old and all(i < 1_000 for i in in_old)
    assert in_new and all(i > 1_000 for i in in_new), "writes after the switch go to the new index"
    failures = metrics.registry.get_sample_value(
        "stream_indexer_items_total", {"result": "dead_lettered"}
    )
    assert not failures


async def _ids(client: AsyncOpenSearch, index: str) -> set[int]:
    response = await client.search(index=index, body={"size": 10_000, "_source": False})
    return {int(hit["_id"]) for hit in response["hits"]["hits"]}


async def test_a_deployment_from_before_the_write_alias_gains_it_on_its_searched_index(
    opensearch_url: str, unique_name: str
) -> None:
    client = AsyncOpenSearch(hosts=[opensearch_url])
    try:
        await client.indices.create(index=f"{unique_name}_v3", body=index_body())
        await client.indices.update_aliases(body=alias_actions(unique_name, f"{unique_name}_v3"))
        async with OpenSearchSink(_settings(opensearch_url, unique_name)) as sink:
            assert sink.bulk_target == f"{unique_name}_write"
        assert await alias_targets(client, f"{unique_name}_write") == [f"{unique_name}_v3"]
        assert not await client.indices.exists(index=f"{unique_name}_v1")
    finally:
        await client.close()


async def test_with_index_creation_off_a_missing_write_alias_fails_naming_the_setting(
    opensearch_url: str, unique_name: str
) -> None:
    settings = _settings(opensearch_url, unique_name, **{"opensearch.create_index": False})
    sink = OpenSearchSink(settings)
    try:
        with pytest.raises(ConfigError, match="STREAM_INDEXER_OPENSEARCH__WRITE_ALIAS"):
            await sink.start()
    finally:
        await sink.stop()


async def test_bulk_through_a_missing_write_alias_is_refused_never_auto_created(
    opensearch_url: str, unique_name: str
) -> None:
    async with OpenSearchSink(_settings(opensearch_url, unique_name)) as sink:
        await sink.client.indices.delete_alias(index=f"{unique_name}_v1", name=sink.write_alias)
        body = b'{"index":{"_id":"1","version":1,"version_type":"external_gte"}}\n{"id":1}\n'
        response = await sink.bulk(body, 1)
        assert response["items"][0]["index"]["status"] == 404
        assert not await sink.client.indices.exists(index=sink.write_alias)


async def test_tombstones_are_listed_with_their_versions_in_id_order(
    opensearch_url: str, unique_name: str
) -> None:
    index = f"{unique_name}_v1"
    client = AsyncOpenSearch(hosts=[opensearch_url])
    try:
        await client.indices.create(index=index, body=index_body())
        for listing_id in range(1, 8):
            doc = tombstone_document(listing_id, 10 * listing_id, "e", "2026-01-01T00:00:00Z")
            if listing_id % 3 == 0:
                doc = {"id": listing_id, "version": 1, "deleted": False, "title": "live"}
            await client.index(index=index, id=str(listing_id), body=doc, refresh=True)
        pages = [page async for page in tombstones(client, index, page_size=2)]
    finally:
        await client.close()
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [pair for page in pages for pair in page] == [
        (1, 10),
        (2, 20),
        (4, 40),
        (5, 50),
        (7, 70),
    ]
