"""Test support: the script language of `FakeBulk` (see its module docstring).

What a test can ask one `_bulk` request or item to answer (`WholeFailure`, per-item specs,
rules), how a spec resolves to an answer, the OpenSearch-style error bodies, and parsing of
the NDJSON request body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

#: the error type an item gets when a script gives only its status
ITEM_ERROR_TYPES: dict[int, str] = {
    400: "mapper_parsing_exception",
    403: "cluster_block_exception",
    404: "index_not_found_exception",
    409: "version_conflict_engine_exception",
    413: "max_bytes_length_exceeded_exception",
    429: "es_rejected_execution_exception",
    500: "exception",
    503: "unavailable_shards_exception",
}
#: the status an item gets when a script gives only its error type
ERROR_TYPE_STATUSES: dict[str, int] = {
    "mapper_parsing_exception": 400,
    "strict_dynamic_mapping_exception": 400,
    "illegal_argument_exception": 400,
    "document_parsing_exception": 400,
    "max_bytes_length_exceeded_exception": 400,
    "action_request_validation_exception": 400,
    "cluster_block_exception": 403,
    "index_not_found_exception": 404,
    "version_conflict_engine_exception": 409,
    "es_rejected_execution_exception": 429,
    "rejected_execution_exception": 429,
    "circuit_breaking_exception": 429,
    "unavailable_shards_exception": 503,
    "no_shard_available_action_exception": 503,
    "timeout_exception": 504,
}
#: whole-request failures: 502/504 normally come from a proxy in front of the cluster
WHOLE_ERROR_TYPES: dict[int, str] = {
    429: "es_rejected_execution_exception",
    500: "exception",
    502: "bad_gateway",
    503: "cluster_block_exception",
    504: "gateway_timeout",
}
#: default reasons by error type ({index} and {id} are filled in)
REASONS: dict[str, str] = {
    "mapper_parsing_exception": "failed to parse field [price] of type [scaled_float]",
    "strict_dynamic_mapping_exception": "mapping set to strict, dynamic introduction of "
    "[surprise] within [_doc] is not allowed",
    "cluster_block_exception": "index [{index}] blocked by: [FORBIDDEN/8/index write (api)];",
    "es_rejected_execution_exception": "rejected execution of coordinating operation "
    "[coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, "
    "coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]",
    "unavailable_shards_exception": "[{index}][0] primary shard is not active Timeout: [1m]",
    "version_conflict_engine_exception": "[{id}]: version conflict (scripted)",
}


@dataclass(frozen=True, slots=True)
class ItemResponse:
    """The answer for one bulk item; `error_type`/`reason` default from the status."""

    status: int
    error_type: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class WholeFailure:
    """A whole `_bulk` request answered with an HTTP error; nothing in it is written."""

    status: int = 503
    error_type: str | None = None
    reason: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


ItemSpec: TypeAlias = ItemResponse | int | str | tuple[int, str] | None
ItemRule: TypeAlias = Callable[[int, int, str, dict[str, Any], dict[str, Any] | None], ItemSpec]
Step: TypeAlias = WholeFailure | ItemRule | Sequence[ItemSpec]


def error_body(status: int, error_type: str, reason: str) -> dict[str, Any]:
    cause = {"type": error_type, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def item_error(
    index: str, doc_id: str, status: int, error_type: str, reason: str
) -> dict[str, Any]:
    return {
        "_index": index,
        "_id": doc_id,
        "status": status,
        "error": {
            "type": error_type,
            "reason": reason,
            "index": index,
            "shard": "0",
            "index_uuid": "fake-bulk-index-uuid",
        },
    }


def coerce(spec: ItemSpec) -> ItemResponse | None:
    """Normalise a per-item spec; None means "process the item normally"."""
    if spec is None or isinstance(spec, ItemResponse):
        return spec
    if isinstance(spec, bool):
        raise TypeError(f"not an item spec: {spec!r}")
    if isinstance(spec, int):
        return ItemResponse(spec)
    if isinstance(spec, str):
        return ItemResponse(ERROR_TYPE_STATUSES.get(spec, 500), spec)
    if isinstance(spec, tuple) and len(spec) == 2:
        return ItemResponse(int(spec[0]), str(spec[1]))
    raise TypeError(f"not an item spec: {spec!r}")


def spec_for(
    step: Step | None,
    request_no: int,
    item_no: int,
    doc_id: str,
    action: dict[str, Any],
    source: dict[str, Any] | None,
) -> ItemResponse | None:
    if step is None or isinstance(step, WholeFailure):
        return None
    if callable(step):
        return coerce(step(request_no, item_no, doc_id, action, source))
    return coerce(step[item_no]) if item_no < len(step) else None


def parse_ndjson(raw: bytes) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(action, source) pairs of a `_bulk` body; deletes have no source line."""
    lines = [line for line in raw.split(b"\n") if line.strip()]
    items: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    position = 0
    while position < len(lines):
        try:
            action = orjson.loads(lines[position])
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"malformed action line {position + 1}: {exc}") from None
        if not isinstance(action, dict) or len(action) != 1:
            raise ValueError(f"malformed action line {position + 1}")
        position += 1
        source: dict[str, Any] | None = None
        if next(iter(action)) != "delete":
            if position >= len(lines):
                raise ValueError("the last action has no source line")
            try:
                source = orjson.loads(lines[position])
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"malformed source line {position + 1}: {exc}") from None
            position += 1
        items.append((action, source))
    return items
