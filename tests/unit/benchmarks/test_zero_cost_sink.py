"""The benchmark's zero-cost sink answers every bulk item as written, in the shape parsed."""

from __future__ import annotations

import orjson
from aiohttp import web

from bench.zero_cost_sink import ZeroCostSink, bulk_answer, bulk_ops
from stream_indexer.opensearch.bulk import ItemOutcome, PendingWrite, build_body, parse_items
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import load_settings


def test_every_item_of_an_indexer_body_is_answered_as_written() -> None:
    # a source line holding what looks like an action must not be taken for one
    writes = [PendingWrite(i, i * 10, {"title": '{"delete":1}', "n": i}) for i in range(1, 6)]
    body = build_body(writes)
    answer = orjson.loads(bulk_answer(body, "errors,items.*.status,items.*.error"))
    assert answer["errors"] is False
    assert "took" not in answer
    assert [r.outcome for r in parse_items(answer, len(writes))] == [ItemOutcome.WRITTEN] * 5


def test_delete_actions_have_no_source_line() -> None:
    body = b'{"delete":{"_id":"1"}}\n{"index":{"_id":"2"}}\n{"a":1}\n{"delete":{"_id":"3"}}\n'
    assert bulk_ops(body) == [b"delete", b"index", b"delete"]
    answer = orjson.loads(bulk_answer(body, None))
    assert answer["took"] == 0
    assert answer["items"][0] == {"delete": {"status": 200}}
    assert answer["items"][1] == {"index": {"status": 201}}


async def test_the_indexers_sink_starts_against_it_and_writes_through_the_write_alias() -> None:
    """The start-up calls (index, search and write alias, their existence checks) are
    answered as OpenSearch would, so the benchmark measures the indexer and not a refusal."""
    sink_app = ZeroCostSink()
    runner = web.AppRunner(sink_app.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = load_settings(
        {
            "kafka.topic": "unused",
            "opensearch.hosts": f"http://127.0.0.1:{port}",
            "opensearch.index": "listings",
            "postgres.dsn": "postgresql://unused@127.0.0.1:1/unused",
        }
    )
    try:
        for _ in range(2):  # the second start finds what the first created
            sink = OpenSearchSink(settings)
            try:
                await sink.start()
                writes = [PendingWrite(i, i, {"n": i}) for i in range(1, 4)]
                answer = await sink.bulk(build_body(writes), len(writes))
            finally:
                await sink.stop()
            assert [r.outcome for r in parse_items(answer, 3)] == [ItemOutcome.WRITTEN] * 3
        assert sink_app.aliases == {"listings": {"listings_v1"}, "listings_write": {"listings_v1"}}
    finally:
        await runner.cleanup()


async def test_it_answers_as_elasticsearch_only_when_asked() -> None:
    """The Elasticsearch client (Quix Streams' sink) refuses a server without the product
    header; the indexer's runs keep an OpenSearch-looking sink."""
    import aiohttp

    headers: dict[bool, str | None] = {}
    for elastic in (False, True):
        runner = web.AppRunner(ZeroCostSink(elastic_product=elastic).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://127.0.0.1:{port}/i/_bulk", data=b'{"index":{}}\n{}\n') as r,
            ):
                assert (await r.json())["items"] == [{"index": {"status": 201}}]
                headers[elastic] = r.headers.get("X-Elastic-Product")
        finally:
            await runner.cleanup()
    assert headers == {False: None, True: "Elasticsearch"}
