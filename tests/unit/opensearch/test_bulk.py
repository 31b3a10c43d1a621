"""Bulk protocol: per-item classification, response parsing and the NDJSON request body."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream_indexer.opensearch.bulk import (
    ItemOutcome,
    PendingWrite,
    build_body,
    classify_item,
    parse_items,
)


def error(error_type: str, reason: str = "boom", **extra: Any) -> dict[str, Any]:
    return {"type": error_type, "reason": reason, **extra}


# -- classify_item ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201])
def test_success_statuses_are_written(status: int) -> None:
    result = classify_item(status, None)
    assert result.outcome is ItemOutcome.WRITTEN
    assert result.status == status


def test_version_conflict_is_stale_not_an_error() -> None:
    result = classify_item(
        409,
        error(
            "version_conflict_engine_exception",
            "[42]: version conflict, current version [9] is higher than the provided version [3]",
        ),
    )
    assert result.outcome is ItemOutcome.STALE
    assert result.error_type == "version_conflict_engine_exception"
    assert result.reason is not None and "version conflict" in result.reason


def test_a_bare_409_is_stale() -> None:
    assert classify_item(409, None).outcome is ItemOutcome.STALE


@pytest.mark.parametrize(
    ("status", "err"),
    [
        (429, error("es_rejected_execution_exception", "rejected execution of coordinating")),
        (429, None),
        (503, error("unavailable_shards_exception", "primary shard is not active")),
        (503, None),
        (500, error("some_internal_exception")),
        # rejected execution is transient whatever status a proxy or version reports
        (400, error("es_rejected_execution_exception")),
        (
            403,
            error(
                "cluster_block_exception",
                "index [listings_v1] blocked by: [FORBIDDEN/12/index read-only / allow delete];",
            ),
        ),
        (429, error("cluster_block_exception", "disk usage exceeded flood-stage watermark")),
    ],
)
def test_overload_and_blocked_cluster_are_retried(status: int, err: Any) -> None:
    result = classify_item(status, err)
    assert result.outcome is ItemOutcome.RETRY
    assert result.status == status


@pytest.mark.parametrize(
    "error_type",
    [
        "mapper_parsing_exception",
        "strict_dynamic_mapping_exception",
        "illegal_argument_exception",
    ],
)
def test_mapping_rejections_are_poison(error_type: str) -> None:
    result = classify_item(
        400,
        error(
            error_type,
            "failed to parse field [price] of type [scaled_float]",
            caused_by={"type": "number_format_exception", "reason": 'For input string: "abc"'},
        ),
    )
    assert result.outcome is ItemOutcome.POISON
    assert result.error_type == error_type
    # the cause is kept in the reason: it is what an operator reads in the DLQ
    assert result.reason == (
        'failed to parse field [price] of type [scaled_float]: For input string: "abc"'
    )


def test_document_too_large_is_poison() -> None:
    assert classify_item(413, None).outcome is ItemOutcome.POISON
    assert classify_item(413, error("content_too_long")).outcome is ItemOutcome.POISON


def test_unknown_400_is_poison() -> None:
    assert classify_item(400, error("something_new_exception")).outcome is ItemOutcome.POISON


@pytest.mark.parametrize(
    ("status", "err"),
    [
        (404, error("document_missing_exception")),
        (403, error("security_exception", "no permissions for [indices:data/write/bulk]")),
        (409, error("resource_already_exists_exception")),
        (418, "a plain string error"),
    ],
)
def test_unknown_client_errors_are_record_errors(status: int, err: Any) -> None:
    result = classify_item(status, err)
    assert result.outcome is ItemOutcome.RECORD_ERROR
    assert result.status == status


def test_a_string_error_becomes_the_reason() -> None:
    result = classify_item(418, "teapot")
    assert result.error_type is None
    assert result.reason == "teapot"


# -- parse_items --------------------------------------------------------------------------


def test_parse_items_classifies_a_realistic_mixed_response() -> None:
    response = {
        "took": 7,
        "errors": True,
        "items": [
            {"index": {"_index": "l_v1", "_id": "1", "_version": 3, "result": "created",
                       "status": 201}},
            {"index": {"_index": "l_v1", "_id": "2", "_version": 5, "result": "updated",
                       "status": 200}},
            {"index": {"_index": "l_v1", "_id": "3", "status": 409,
                       "error": error("version_conflict_engine_exception",
                                      "[3]: version conflict, current version [8] is higher")}},
            {"index": {"_index": "l_v1", "_id": "4", "status": 400,
                       "error": error("strict_dynamic_mapping_exception",
                                      "mapping set to strict, dynamic introduction of [x]")}},
            {"index": {"_index": "l_v1", "_id": "5", "status": 429,
                       "error": error("es_rejected_execution_exception", "queue full")}},
            {"index": {"_index": "l_v1", "_id": "6", "status": 503,
                       "error": error("unavailable_shards_exception", "no primary")}},
            {"index": {"_index": "l_v1", "_id": "7", "status": 404,
                       "error": error("document_missing_exception", "[7]: document missing")}},
        ],
    }  # fmt: skip
    results = parse_items(response, expected=7)
    assert [r.outcome for r in results] == [
        ItemOutcome.WRITTEN,
        ItemOutcome.WRITTEN,
        ItemOutcome.STALE,
        ItemOutcome.POISON,
        ItemOutcome.RETRY,
        ItemOutcome.RETRY,
        ItemOutcome.RECORD_ERROR,
    ]
    assert [r.status for r in results] == [200, 200, 409, 400, 429, 503, 404]
    assert results[3].error_type == "strict_dynamic_mapping_exception"


def test_without_errors_every_item_is_written_unread() -> None:
    # `errors: false` is the cluster's word for all of them; the items are not read (the
    # third, trimmed to nothing, would be retried if they were)
    response = {"errors": False, "items": [{"index": {"status": 201}}, {"index": {}}, {}]}
    assert [r.outcome for r in parse_items(response, expected=3)] == [ItemOutcome.WRITTEN] * 3


def test_parse_items_reads_any_action_name() -> None:
    response = {"items": [{"delete": {"status": 200}}, {"create": {"status": 409}}]}
    outcomes = [r.outcome for r in parse_items(response, expected=2)]
    assert outcomes == [ItemOutcome.WRITTEN, ItemOutcome.STALE]


@pytest.mark.parametrize(
    "response",
    [
        {"items": [{"index": {"status": 201}}]},  # short: 1 item for 3 writes
        {"items": [{"index": {"status": 201}}] * 4},  # long
        {"errors": False},  # no items at all
        {"items": None},
        {"items": {"index": {"status": 201}}},  # not a list
        {},
    ],
)
def test_a_short_or_malformed_response_retries_everything(response: dict[str, Any]) -> None:
    results = parse_items(response, expected=3)
    assert len(results) == 3
    assert all(r.outcome is ItemOutcome.RETRY for r in results)


@pytest.mark.parametrize(
    "item",
    [
        "not an object",
        {},
        {"index": {"_id": "1"}},  # no status
        {"index": {"status": "201"}},  # status as a string
        {"index": None},
    ],
    ids=["string", "empty", "no-status", "string-status", "null-body"],
)
def test_an_odd_item_is_retried_not_charged_to_the_record(item: Any) -> None:
    results = parse_items({"items": [{"index": {"status": 201}}, item]}, expected=2)
    assert results[0].outcome is ItemOutcome.WRITTEN
    assert results[1].outcome is ItemOutcome.RETRY


# -- build_body ---------------------------------------------------------------------------


def test_build_body_is_ndjson_with_external_gte_versions_and_ids() -> None:
    writes = [
        PendingWrite(7, 1_700_000_000_000_123, {"id": 7, "title": 'Oak "table"\nnew'}),
        PendingWrite(8, 0, {"id": 8, "deleted": True, "version": 0}),
        PendingWrite(9, 3, {"id": 9, "title": "Fahrrad für Kinder ✓", "attributes": {"a": None}}),
    ]
    body = build_body(writes)

    assert body.endswith(b"\n")  # _bulk needs a final newline
    lines = body.decode("utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == 2 * len(writes)
    for n, write in enumerate(writes):
        action = json.loads(lines[2 * n])
        source = json.loads(lines[2 * n + 1])
        assert action == {
            "index": {
                "_id": str(write.listing_id),
                "version": write.version,
                "version_type": "external_gte",
            }
        }
        assert source == write.document


def test_build_body_of_nothing_is_empty() -> None:
    assert build_body([]) == b""
