"""Fake bulk endpoint: scripted answers, versioning, recording, and the real sink against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from support.fake_bulk import FakeBulk, ItemResponse, WholeFailure
from support.fault_proxy import FaultProxy, Mode

from stream_indexer.errors import SinkUnavailableError
from stream_indexer.opensearch.bulk import ItemOutcome, PendingWrite, build_body, parse_items
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import load_settings

INDEX = "fake-listings_v1"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBulk]:
    async with FakeBulk() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def body(*writes: tuple[int, int]) -> bytes:
    """A bulk body as the pipeline builds it: (listing_id, version) pairs."""
    return build_body(
        [
            PendingWrite(listing_id, version, {"id": listing_id, "v": version})
            for listing_id, version in writes
        ]
    )


async def post_bulk(
    http: aiohttp.ClientSession, fake: FakeBulk, payload: bytes, index: str = INDEX
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{fake.url}/{index}/_bulk",
        data=payload,
        headers={"content-type": "application/x-ndjson"},
    ) as response:
        return response.status, orjson.loads(await response.read())


def statuses(response: dict[str, Any]) -> list[int]:
    return [item["index"]["status"] for item in response["items"]]


async def test_scripted_item_statuses_come_back_in_order(
    fake: FakeBulk, http: aiohttp.ClientSession
) -> None:
    fake.script([201, 409, 400, "strict_dynamic_mapping_exception", 429, 503, (500, "boom")])
    status, response = await post_bulk(http, fake, body(*[(n, 1) for n in range(1, 9)]))
    assert status == 200
    assert response["errors"] is True
    assert statuses(response) == [201, 409, 400, 400, 429, 503, 500, 201]
    errors = [item["index"].get("error", {}).get("type") for item in response["items"]]
    assert errors == [
        None,
        "version_conflict_engine_exception",
        "mapper_parsing_exception",
        "strict_dynamic_mapping_exception",
        "es_rejected_execution_exception",
        "unavailable_shards_exception",
        "boom",
        None,
    ]
    first = response["items"][0]["index"]
    assert first["_index"] == INDEX
    assert first["_id"] == "1"
    assert first["_version"] == 1
    assert first["result"] == "created"
    # scripted and natural successes are stored, scripted failures are not
    assert sorted(fake.documents[INDEX], key=int) == ["1", "8"]


async def test_whole_response_429_then_success(fake: FakeBulk, http: aiohttp.ClientSession) -> None:
    fake.script(WholeFailure(429, headers={"Retry-After": "1"}))
    async with http.post(f"{fake.url}/{INDEX}/_bulk", data=body((1, 1))) as rejected:
        assert rejected.status == 429
        assert rejected.headers["Retry-After"] == "1"
        error = orjson.loads(await rejected.read())
    assert error["status"] == 429
    assert error["error"]["type"] == "es_rejected_execution_exception"
    assert error["error"]["root_cause"][0]["type"] == "es_rejected_execution_exception"
    assert fake.doc(1, INDEX) is None

    status, response = await post_bulk(http, fake, body((1, 1)))
    assert status == 200
    assert response["errors"] is False
    assert statuses(response) == [201]
    assert [request.status for request in fake.requests] == [429, 200]


async def test_external_gte_versions_give_natural_conflicts(
    fake: FakeBulk, http: aiohttp.ClientSession
) -> None:
    _, first = await post_bulk(http, fake, body((7, 5)))
    _, second = await post_bulk(http, fake, body((7, 5), (7, 9), (7, 3)))
    assert statuses(first) == [201]
    assert statuses(second) == [200, 200, 409]
    conflict = second["items"][2]["index"]["error"]
    assert conflict["type"] == "version_conflict_engine_exception"
    assert "current version [9]" in conflict["reason"]
    stored = fake.doc(7)
    assert stored is not None
    assert stored.version == 9
    assert stored.source == {"id": 7, "v": 9}


async def test_requests_record_what_was_sent_for_retry_assertions(
    fake: FakeBulk, http: aiohttp.ClientSession
) -> None:
    fake.script([201, 429, 201, 503])
    waiter = asyncio.create_task(fake.wait_for_requests(2))
    await post_bulk(http, fake, body((1, 1), (2, 1), (3, 1), (4, 1)))
    assert not waiter.done()
    await post_bulk(http, fake, body((2, 1), (4, 1)))
    await asyncio.wait_for(waiter, 5)
    first, retry = fake.requests
    assert first.index == INDEX
    assert first.ids == ["1", "2", "3", "4"]
    assert first.item_statuses == [201, 429, 201, 503]
    assert retry.ids == ["2", "4"]
    action, source = retry.items[0]
    assert action == {"index": {"_id": "2", "version": 1, "version_type": "external_gte"}}
    assert source == {"id": 2, "v": 1}
    assert sorted(fake.documents[INDEX], key=int) == ["1", "2", "3", "4"]


async def test_callable_rule_and_default(fake: FakeBulk, http: aiohttp.ClientSession) -> None:
    seen: list[tuple[int, int, str]] = []

    def rule(
        request_no: int, item_no: int, doc_id: str, action: dict[str, Any], source: Any
    ) -> ItemResponse | None:
        seen.append((request_no, item_no, doc_id))
        assert action["index"]["_id"] == doc_id
        return ItemResponse(429) if doc_id == "2" else None

    fake.script(rule, default=[400])
    _, first = await post_bulk(http, fake, body((1, 1), (2, 1)))
    _, later = await post_bulk(http, fake, body((3, 1), (4, 1)))
    assert seen == [(0, 0, "1"), (0, 1, "2")]
    assert statuses(first) == [201, 429]
    assert statuses(later) == [400, 201]
    assert fake.steps_left == 0


async def test_fail_all_answers_every_call(fake: FakeBulk, http: aiohttp.ClientSession) -> None:
    fake.fail_all(WholeFailure(503))
    async with http.get(fake.url) as response:
        assert response.status == 503
    status, _ = await post_bulk(http, fake, body((1, 1)))
    assert status == 503
    fake.fail_all(None)
    status, _ = await post_bulk(http, fake, body((1, 1)))
    assert status == 200
    assert [request.status for request in fake.requests] == [503, 200]


def sink_settings(url: str, **extra: Any) -> Any:
    return load_settings({"opensearch.hosts": url, "opensearch.index": "fake-listings", **extra})


async def test_opensearch_sink_against_the_fake(fake: FakeBulk) -> None:
    async with OpenSearchSink(sink_settings(fake.url)) as sink:
        assert await sink.ping()
        assert INDEX in fake.indices
        assert fake.aliases() == {"fake-listings": [INDEX], "fake-listings_write": [INDEX]}
        assert ("PUT", f"/{INDEX}") in fake.calls
        assert ("POST", "/_aliases") in fake.calls
        mappings = fake.indices[INDEX].body.get("mappings")
        assert mappings, "the sink sends its mapping when it creates the index"

        fake.script(WholeFailure(429), [201, 409, 400, 429, 503])
        with pytest.raises(SinkUnavailableError, match="429"):
            await sink.bulk(body((1, 1)), 1)
        payload = body((1, 1), (2, 1), (3, 1), (4, 1), (5, 1))
        results = parse_items(await sink.bulk(payload, 5), 5)
        assert [result.outcome for result in results] == [
            ItemOutcome.WRITTEN,
            ItemOutcome.STALE,
            ItemOutcome.POISON,
            ItemOutcome.RETRY,
            ItemOutcome.RETRY,
        ]
        assert fake.requests[1].ids == ["1", "2", "3", "4", "5"]

    # a second start finds index and alias in place and creates nothing
    creates = fake.calls.count(("PUT", f"/{INDEX}"))
    async with OpenSearchSink(sink_settings(fake.url)) as sink:
        assert fake.calls.count(("PUT", f"/{INDEX}")) == creates


async def test_sink_keepalive_pool_sees_proxy_outages(fake: FakeBulk) -> None:
    """FaultProxy and FakeBulk together: a pooled connection is cut, then recovers."""
    async with FaultProxy("127.0.0.1", fake.port) as proxy:
        settings = sink_settings(proxy.url(), **{"opensearch.request_timeout_s": 2.0})
        async with OpenSearchSink(settings) as sink:
            assert statuses(await sink.bulk(body((1, 1)), 1)) == [201]
            await proxy.set_mode(Mode.RESET)
            with pytest.raises(SinkUnavailableError):
                await sink.bulk(body((2, 1)), 1)
            await proxy.set_mode(Mode.BLACKHOLE)
            with pytest.raises(SinkUnavailableError):
                await sink.bulk(body((3, 1)), 1)
            await proxy.set_mode(Mode.PASS)
            assert statuses(await sink.bulk(body((4, 1)), 1)) == [201]
    assert fake.doc(4) is not None
    assert fake.doc(2) is None
