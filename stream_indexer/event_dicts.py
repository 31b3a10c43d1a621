"""Event contract, fast form (core): the models compiled into a validator that yields dicts.

`ListingEvent.model_validate*` spends much of its time building model instances (and later
freeing them), which the hot paths only read a few fields from: the worker decoding each
record, and `emit_nowait` on the producer caller's thread. So both validate with a
pydantic-core validator **compiled from the models' own core schema**: every `model` node
becomes a `typed-dict` node with the same field schemas, caps and `extra` behaviour, and the
model validator (`data.id == listing_id`) is applied to the dict. The models stay the one
source of the contract; nothing is restated here.

What this validator refuses is validated again by the models, so the error a caller or a
dead letter sees is in the models' words. Hypothesis tests hold both validators to the same
decision and the same values (`tests/unit/pipeline/test_event_dict.py` for JSON records,
`tests/unit/producer/test_fast_emit.py` for the producer's Python input), and
`encode_event_dict` to the bytes of `model_dump_json(exclude_none=True)`.

The producer takes the **sparse** form (`SPARSE_EVENT_DICT_VALIDATOR`): a field left out stays
out instead of being filled with its `None` default, so a typical event has no nulls to strip
before orjson writes it (about half the cost of encoding on the caller's thread).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import CoreConfig, SchemaValidator

from stream_indexer.models import ListingEvent

#: The keys of a core schema that hold nested schemas (the ones our models use).
_NESTED = ("schema", "items_schema", "keys_schema", "values_schema", "choices")

#: Model config the typed dicts carry over (anything else must be added here, with thought).
_CONFIG_CARRIED = {"extra_fields_behavior", "title"}

EventDict = dict[str, Any]


def _data_matches_listing(event: EventDict) -> EventDict:
    """`ListingEvent._data_matches_listing` on the dict (the message is the model's, since a
    refused event is validated again by the model)."""
    data = event.get("data")  # absent from the sparse form when the event has none
    if data is not None and data["id"] != event["listing_id"]:
        raise ValueError("data.id must equal listing_id")
    return event


def _field(schema: Any, *, sparse: bool) -> dict[str, Any]:
    """A typed-dict field for a model field: a field with a default is optional, and the
    default fills it in as on a model, unless `sparse` (then an absent field stays absent)."""
    has_default = schema.get("type") == "default"
    if has_default and sparse:
        if schema.get("default", ...) is not None:
            # leaving it out would change the encoded bytes, which carry non-null defaults
            raise TypeError(f"no sparse form for a field defaulting to {schema.get('default')!r}")
        schema = schema["schema"]
    return {
        "type": "typed-dict-field",
        "schema": _as_typed_dicts(schema, sparse=sparse),
        "required": not has_default,
    }


def _as_typed_dicts(schema: Any, *, sparse: bool = False) -> Any:
    """A copy of a model core schema with every model turned into a typed dict."""
    if isinstance(schema, list):
        return [_as_typed_dicts(item, sparse=sparse) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind == "function-after" and schema["schema"].get("type") == "model":
        if schema["schema"]["cls"] is not ListingEvent:
            raise TypeError(f"no dict form for the model validator of {schema['schema']['cls']}")
        return {
            "type": "function-after",
            "function": {"type": "no-info", "function": _data_matches_listing},
            "schema": _as_typed_dicts(schema["schema"], sparse=sparse),
        }
    if kind == "model":
        unknown = set(schema["config"]) - _CONFIG_CARRIED
        if unknown:
            # e.g. `str_max_length`: a model-wide rule the typed dict would silently drop
            raise TypeError(f"no dict form for model config {sorted(unknown)}")
        fields = schema["schema"]["fields"]
        return {
            "type": "typed-dict",
            "fields": {
                name: _field(field["schema"], sparse=sparse) for name, field in fields.items()
            },
            "extra_behavior": schema["config"].get("extra_fields_behavior", "ignore"),
        }
    if kind in ("definitions", "definition-ref", "function-before", "function-wrap"):
        raise TypeError(f"no dict form for a {kind} node of the event schema")
    return {
        key: _as_typed_dicts(value, sparse=sparse) if key in _NESTED else value
        for key, value in schema.items()
        if key not in ("ref", "metadata")
    }


#: JSON parsing caches only the keys' strings (pydantic-core's default caches every string
#: up to 64 characters): an event's values (ids, titles, image URLs) rarely repeat, so looking
#: each one up costs more than it saves, about 7 % of a validation (docs/performance.md)
_CONFIG: CoreConfig = {"cache_strings": "keys"}

EVENT_DICT_VALIDATOR = SchemaValidator(
    _as_typed_dicts(ListingEvent.__pydantic_core_schema__), _CONFIG
)
#: the same decisions and values, without the `None` defaults of fields left out
SPARSE_EVENT_DICT_VALIDATOR = SchemaValidator(
    _as_typed_dicts(ListingEvent.__pydantic_core_schema__, sparse=True), _CONFIG
)
#: the sparse validator without the `data.id == listing_id` check, for events whose
#: `listing_id` the caller read from `data["id"]` itself (`emit_index_nowait`): the two are
#: the same input value through the same integer schema and cannot differ, and the check is
#: the one Python call inside validation (about a tenth of a warm call)
SPARSE_SAME_ID_EVENT_DICT_VALIDATOR = SchemaValidator(
    _as_typed_dicts(ListingEvent.__pydantic_core_schema__, sparse=True)["schema"], _CONFIG
)


def event_dict(event: ListingEvent) -> EventDict:
    """The dict form of a model-validated event (the values the fast validator yields).

    It owns its containers, as the validator's output does: a frozen model still lets its
    caller change the `attributes` dict or the `images` list in place, and the producer
    writes the record bytes after `emit_*_nowait` has returned."""
    out = dict(event.__dict__)
    if event.data is not None:
        data = {
            name: value.copy() if isinstance(value, dict | list) else value
            for name, value in event.data.__dict__.items()
        }
        if event.data.location is not None:
            data["location"] = dict(event.data.location.__dict__)
        out["data"] = data
    return out


def encode_event_dict(event: EventDict) -> bytes:
    """A validated event dict as a record value: the bytes of the model's
    `model_dump_json(exclude_none=True)` (absent fields left out; UTC written as `Z`).

    A sparse event with no nulls (the usual case) is written as it is: the two `None in`
    scans cost a fraction of copying both dicts."""
    data = event.get("data")
    if None not in event.values() and (data is None or None not in data.values()):
        return orjson.dumps(event, option=orjson.OPT_UTC_Z)
    return orjson.dumps(without_nulls(event), option=orjson.OPT_UTC_Z)


def without_nulls(event: EventDict) -> EventDict:
    """`event` with its `None` fields left out, and its listing's: what the record bytes
    carry, whether the dict is the full form (defaults filled in) or the sparse one."""
    out = {name: value for name, value in event.items() if value is not None}
    data = out.get("data")
    if data is not None:
        out["data"] = {name: value for name, value in data.items() if value is not None}
    return out


__all__ = [
    "EVENT_DICT_VALIDATOR",
    "SPARSE_EVENT_DICT_VALIDATOR",
    "SPARSE_SAME_ID_EVENT_DICT_VALIDATOR",
    "EventDict",
    "encode_event_dict",
    "event_dict",
    "without_nulls",
]
