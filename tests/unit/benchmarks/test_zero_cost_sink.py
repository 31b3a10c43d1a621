"""The benchmark's zero-cost sink answers every bulk item as written, in the shape parsed."""

from __future__ import annotations

import orjson

from bench.zero_cost_sink import bulk_answer, bulk_ops
from stream_indexer.opensearch.bulk import ItemOutcome, PendingWrite, build_body, parse_items


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
