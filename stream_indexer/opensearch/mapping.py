"""OpenSearch index definition: what the sink writes into and what searches read through.

The physical index is versioned (`marketplace_listings_v1`); searches use an alias that
filters out tombstones. A delete is written as an *index* action of a tombstone document
with `version_type=external_gte`, never as a real delete: OpenSearch forgets the version of
a deleted document after `index.gc_deletes` (60 s), after which a late, older `index` event
would resurrect the listing. A tombstone keeps its version for as long as it exists, so
"newest version wins" holds forever.

The mapping is `dynamic: strict` and names every `Listing` field at top level: a field the
models do not know is a mapping rejection, never a silent new field (no mapping explosions).
`attributes` is a `flat_object`: arbitrary (but model-capped) keys are searchable as
`attributes.<key>` without adding one mapped field per key. `schemas/listings_index.json` is
generated from this module (`python -m stream_indexer.devtools.schema_export`).
"""

from __future__ import annotations

import copy
from typing import Any

#: Service metadata stored next to the listing fields in every document.
METADATA_FIELDS: tuple[str, ...] = ("version", "indexed_at", "event_id", "deleted")

#: Cents precision for sorting and aggregations; `_source` keeps the exact number sent.
PRICE_SCALING_FACTOR = 100

#: Longer titles are still searchable as text, only not as an exact `title.raw` term.
TITLE_RAW_IGNORE_ABOVE = 256

_KEYWORD: dict[str, Any] = {"type": "keyword"}
_LONG: dict[str, Any] = {"type": "long"}
_DATE: dict[str, Any] = {"type": "date"}

_LISTING_PROPERTIES: dict[str, dict[str, Any]] = {
    "id": _LONG,
    "title": {
        "type": "text",
        "fields": {"raw": {"type": "keyword", "ignore_above": TITLE_RAW_IGNORE_ABOVE}},
    },
    "price": {"type": "scaled_float", "scaling_factor": PRICE_SCALING_FACTOR},
    "status": _KEYWORD,
    "updated_at": _DATE,
    "user_id": _LONG,
    "category_id": _LONG,
    "description": {"type": "text"},
    "condition": _KEYWORD,
    "currency": _KEYWORD,
    "location": {"type": "geo_point"},
    "city": _KEYWORD,
    "country": _KEYWORD,
    # One mapped field however many distinct keys the listings carry.
    "attributes": {"type": "flat_object"},
    # Shown, never searched: kept in _source only.
    "images": {"type": "keyword", "index": False, "doc_values": False},
    "views_count": _LONG,
    "created_at": _DATE,
}

_METADATA_PROPERTIES: dict[str, dict[str, Any]] = {
    "version": _LONG,
    "indexed_at": _DATE,
    "event_id": _KEYWORD,
    "deleted": {"type": "boolean"},
}


def index_body(*, number_of_shards: int = 1, number_of_replicas: int = 0) -> dict[str, Any]:
    """The body of `PUT /<physical index>`: settings and the strict mapping."""
    properties = {**_LISTING_PROPERTIES, **_METADATA_PROPERTIES}
    return {
        "settings": {
            "index": {
                "number_of_shards": number_of_shards,
                "number_of_replicas": number_of_replicas,
            }
        },
        "mappings": {
            "dynamic": "strict",
            # a deep copy: a caller editing the result cannot change the module's constants
            "properties": copy.deepcopy(properties),
        },
    }


def alias_filter() -> dict[str, Any]:
    """The search alias's filter: every document except tombstones."""
    return {"bool": {"must_not": [{"term": {"deleted": True}}]}}


def alias_actions(
    alias: str, physical_index: str, *, remove_from: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The body of `POST /_aliases` pointing `alias` at `physical_index`, with the filter.

    `remove_from` names earlier physical indices to detach in the same atomic request
    (a reindex cut-over).
    """
    actions: list[dict[str, Any]] = [
        {"remove": {"index": old, "alias": alias}} for old in remove_from if old != physical_index
    ]
    actions.append(
        {
            "add": {
                "index": physical_index,
                "alias": alias,
                "filter": alias_filter(),
                "is_write_index": True,
            }
        }
    )
    return {"actions": actions}


def tombstone_document(
    listing_id: int, version: int, event_id: str, indexed_at: str
) -> dict[str, Any]:
    """The `_source` a delete writes (index action, `version_type=external_gte`)."""
    return {
        "id": listing_id,
        "version": version,
        "indexed_at": indexed_at,
        "event_id": event_id,
        "deleted": True,
    }


__all__ = [
    "METADATA_FIELDS",
    "PRICE_SCALING_FACTOR",
    "alias_actions",
    "alias_filter",
    "index_body",
    "tombstone_document",
]
