"""Bulk protocol: turn pending writes into one `_bulk` body and read its answer item by item.

Every write is an `index` action with `version_type=external_gte` and the event's version:
a delete is written as a versioned tombstone document (see `mapping.tombstone_document`),
so a later, older `index` event gets a 409 instead of resurrecting the listing, however
late it arrives. The response is read per item: one failed item never fails its batch.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

VERSION_TYPE = "external_gte"

RETRIABLE_ERROR_TYPES = frozenset(
    {
        "es_rejected_execution_exception",
        "rejected_execution_exception",
        "cluster_block_exception",
        "circuit_breaking_exception",
        "process_cluster_event_timeout_exception",
        "unavailable_shards_exception",
        "node_not_connected_exception",
        "no_shard_available_action_exception",
        "index_not_found_exception",
        "timeout_exception",
    }
)
POISON_ERROR_TYPES = frozenset(
    {
        "mapper_parsing_exception",
        "strict_dynamic_mapping_exception",
        "illegal_argument_exception",
        "document_parsing_exception",
        "mapper_exception",
        "parse_exception",
        "x_content_parse_exception",
        "max_bytes_length_exceeded_exception",
    }
)


class ItemOutcome(enum.Enum):
    """What one bulk item's answer means for its record."""

    WRITTEN = "written"
    #: a newer version is already indexed: done, counted as stale
    STALE = "stale"
    #: the sink is overloaded or degraded (429, 5xx, rejected execution): retry, no budget
    RETRY = "retry"
    #: an unknown failure of this record: retry within the attempt budget, then poison
    RECORD_ERROR = "record_error"
    #: the document itself was rejected: dead-letter now
    POISON = "poison"


@dataclass(slots=True)
class ItemResult:
    outcome: ItemOutcome
    status: int
    error_type: str | None = None
    reason: str | None = None


@dataclass(slots=True, eq=False)
class PendingWrite:
    """One document write: the newest event of one listing in a batch."""

    listing_id: int
    version: int
    document: dict[str, Any]
    #: opaque per-write context the worker needs afterwards (records, timestamps)
    context: Any = None
    attempts: int = 0
    last_error: str | None = field(default=None)


def classify_item(status: int, error: Any) -> ItemResult:
    """Map one bulk item's status and error object to an outcome."""
    if 200 <= status < 300:
        return ItemResult(ItemOutcome.WRITTEN, status)
    error_type, reason = _error_fields(error)
    if status == 409 and error_type in (None, "version_conflict_engine_exception"):
        return ItemResult(ItemOutcome.STALE, status, error_type, reason)
    if error_type in POISON_ERROR_TYPES or status == 413:
        return ItemResult(ItemOutcome.POISON, status, error_type, reason)
    if status == 429 or status >= 500 or error_type in RETRIABLE_ERROR_TYPES:
        return ItemResult(ItemOutcome.RETRY, status, error_type, reason)
    if status == 400:
        return ItemResult(ItemOutcome.POISON, status, error_type, reason)
    return ItemResult(ItemOutcome.RECORD_ERROR, status, error_type, reason)


def _error_fields(error: Any) -> tuple[str | None, str | None]:
    if isinstance(error, dict):
        error_type = error.get("type")
        reason = error.get("reason")
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            reason = f"{reason}: {caused.get('reason')}"
        return (str(error_type) if error_type else None), (str(reason) if reason else None)
    if error is None:
        return None, None
    return None, str(error)


def build_body(writes: Sequence[PendingWrite]) -> bytes:
    """The NDJSON `_bulk` body for `writes`, in order (targets the URL's index)."""
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    parts: list[bytes] = []
    append = parts.append
    for write in writes:
        append(
            b'{"index":{"_id":"%d","version":%d,"version_type":"external_gte"}}\n'
            % (write.listing_id, write.version)
        )
        append(dumps(write.document, option=newline))
    return b"".join(parts)


def parse_items(response: dict[str, Any], expected: int) -> list[ItemResult]:
    """Classify every item of a bulk response; a short or odd response is all-retry."""
    items = response.get("items")
    if not isinstance(items, list) or len(items) != expected:
        return [ItemResult(ItemOutcome.RETRY, 0, "malformed_bulk_response", None)] * expected
    if response.get("errors") is False:
        # OpenSearch's word that every item succeeded: nothing to read item by item (the
        # common answer; reading thousands of items cost about 0.3 µs per document)
        return [_WRITTEN] * expected
    results: list[ItemResult] = []
    for item in items:
        body = next(iter(item.values())) if isinstance(item, dict) and item else None
        status = body.get("status") if isinstance(body, dict) else None
        if type(status) is not int:
            # an item we cannot read says nothing about the record: retry, never charge it
            results.append(_UNREADABLE)
        elif 200 <= status < 300:
            results.append(_WRITTEN)
        else:
            results.append(classify_item(status, body.get("error")))  # type: ignore[union-attr]
    return results


_WRITTEN = ItemResult(ItemOutcome.WRITTEN, 200)
_UNREADABLE = ItemResult(ItemOutcome.RETRY, 0, "malformed_bulk_item", None)
