"""The OpenSearch sink against osmem-server: index set-up on start, trimmed bulk answers."""

from __future__ import annotations

import asyncio
from unittest.mock import ANY

import pytest
from opensearchpy import AsyncOpenSearch

from stream_indexer.errors import ConfigError
from stream_indexer.opensearch.bulk import PendingWrite, build_body, parse_items
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import Settings, load_settings

pytestmark = pytest.mark.integration

PODS = 6
ROUNDS = 8


def _settings(opensearch_url: str, index: str) -> Settings:
    return load_settings(
        {
            "kafka.topic": "unused",
            "opensearch.hosts": opensearch_url,
            "opensearch.index": index,
            "postgres.dsn": "postgresql://unused@127.0.0.1:1/unused",
        }
    )


async def _start_and_stop(settings: Settings, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    sink = OpenSearchSink(settings)
    try:
        await sink.start()
    finally:
        await sink.stop()


async def test_pods_starting_together_all_set_up_the_same_index_and_alias(
    opensearch_url: str, unique_name: str
) -> None:
    """Staggered by a few milliseconds, so that one pod looks for the alias just before
    another creates it and then sees the alias name in use: it must not take the alias
    for a concrete index."""
    for round_no in range(ROUNDS):
        index = f"{unique_name}-{round_no}"
        settings = _settings(opensearch_url, index)
        await asyncio.gather(
            *(_start_and_stop(settings, pod * 0.002 * (round_no % 4)) for pod in range(PODS))
        )
        client = AsyncOpenSearch(hosts=[opensearch_url])
        try:
            aliases = await client.indices.get_alias(name=index)
            write_aliases = await client.indices.get_alias(name=f"{index}_write")
        finally:
            await client.close()
        assert set(aliases) == {f"{index}_v1"}
        assert write_aliases == {f"{index}_v1": {"aliases": {f"{index}_write": ANY}}}


async def test_a_concrete_index_with_the_alias_name_fails_naming_the_setting(
    opensearch_url: str, unique_name: str
) -> None:
    client = AsyncOpenSearch(hosts=[opensearch_url])
    try:
        await client.indices.create(index=unique_name)
    finally:
        await client.close()
    with pytest.raises(ConfigError, match="STREAM_INDEXER_OPENSEARCH__INDEX"):
        await _start_and_stop(_settings(opensearch_url, unique_name), 0)


async def test_bulk_answers_carry_only_what_is_read_per_item(
    opensearch_url: str, unique_name: str
) -> None:
    sink = OpenSearchSink(_settings(opensearch_url, unique_name))
    await sink.start()
    try:
        first = [PendingWrite(1, 5, {"title": "a"}), PendingWrite(2, 5, {"title": "b"})]
        await sink.bulk(build_body(first), len(first))
        again = [PendingWrite(1, 7, {"title": "a2"}), PendingWrite(2, 3, {"title": "old"})]
        response = await sink.bulk(build_body(again), len(again))
    finally:
        await sink.stop()
    assert set(response) == {"errors", "items"}
    assert [set(next(iter(item.values()))) for item in response["items"]] == [
        {"status"},
        {"status", "error"},
    ]
    assert [r.outcome.value for r in parse_items(response, 2)] == ["written", "stale"]
