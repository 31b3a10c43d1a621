"""Hot-path decoding (pipeline, per record): the event contract validated into plain dicts.

`ListingEvent.model_validate_json` spends about 40 % of its time building model instances
(and later freeing them), which the worker only reads a few fields from. So the worker
validates with a pydantic-core validator **compiled from the models' own core schema**: every
`model` node becomes a `typed-dict` node with the same field schemas, caps and `extra`
behaviour, and the model validator (`data.id == listing_id`) is applied to the dict. The
models stay the one source of the contract; nothing is restated here.

A record this validator refuses is decoded again by `decode.decode_event`, so what a bad
record becomes (error class and message) is exactly what the models say. A hypothesis test
(`tests/unit/pipeline/test_event_dict.py`) holds both validators to the same decision and
the same values over generated valid and invalid events.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic_core import SchemaValidator, ValidationError

from stream_indexer.models import ListingEvent
from stream_indexer.pipeline.decode import (
    MAX_DEPTH,
    check_after_validation,
    decode_event,
    precheck,
)

#: The keys of a core schema that hold nested schemas (the ones our models use).
_NESTED = ("schema", "items_schema", "keys_schema", "values_schema", "choices")

#: Model config the typed dicts carry over (anything else must be added here, with thought).
_CONFIG_CARRIED = {"extra_fields_behavior", "title"}

EventDict = dict[str, Any]


def _data_matches_listing(event: EventDict) -> EventDict:
    """`ListingEvent._data_matches_listing` on the dict (the message is the model's, since a
    refused record is re-decoded by the model)."""
    data = event["data"]
    if data is not None and data["id"] != event["listing_id"]:
        raise ValueError("data.id must equal listing_id")
    return event


def _as_typed_dicts(schema: Any) -> Any:
    """A copy of a model core schema with every model turned into a typed dict."""
    if isinstance(schema, list):
        return [_as_typed_dicts(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind == "function-after" and schema["schema"].get("type") == "model":
        if schema["schema"]["cls"] is not ListingEvent:
            raise TypeError(f"no dict form for the model validator of {schema['schema']['cls']}")
        return {
            "type": "function-after",
            "function": {"type": "no-info", "function": _data_matches_listing},
            "schema": _as_typed_dicts(schema["schema"]),
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
                name: {
                    "type": "typed-dict-field",
                    "schema": _as_typed_dicts(field["schema"]),
                    # a field with a default is optional; the default fills it in, as on a model
                    "required": field["schema"].get("type") != "default",
                }
                for name, field in fields.items()
            },
            "extra_behavior": schema["config"].get("extra_fields_behavior", "ignore"),
        }
    if kind in ("definitions", "definition-ref", "function-before", "function-wrap"):
        raise TypeError(f"no dict form for a {kind} node of the event schema")
    return {
        key: _as_typed_dicts(value) if key in _NESTED else value
        for key, value in schema.items()
        if key not in ("ref", "metadata")
    }


EVENT_DICT_VALIDATOR = SchemaValidator(_as_typed_dicts(ListingEvent.__pydantic_core_schema__))


def event_dict(event: ListingEvent) -> EventDict:
    """The dict form of a model-validated event (the values the fast validator yields)."""
    out = dict(event.__dict__)
    if event.data is not None:
        data = dict(event.data.__dict__)
        if event.data.location is not None:
            data["location"] = dict(event.data.location.__dict__)
        out["data"] = data
    return out


def listing_document(data: dict[str, Any]) -> dict[str, Any]:
    """The `_source` of a validated listing dict: `Listing.to_document()` of the same event."""
    return {name: value for name, value in data.items() if value is not None}


def decode_event_dict(key: bytes | None, value: bytes | None, *, max_bytes: int) -> EventDict:
    """`decode.decode_event`, yielding the event as a dict; raises the same poison errors."""
    if value is None or len(value) > max_bytes:
        value = precheck(value, max_bytes)  # raises: no value, or one too large to read
    try:
        event = cast(EventDict, EVENT_DICT_VALIDATOR.validate_json(value))
    except ValidationError:
        # the models decide what a bad record is (and say it in their words)
        return event_dict(decode_event(key, value, max_bytes=max_bytes))
    # the common case inline (this runs per record); the checks themselves are decode's
    listing_id = event["listing_id"]
    if (key is not None and key != b"%d" % listing_id) or (
        value.count(b"{") + value.count(b"[") > MAX_DEPTH
    ):
        check_after_validation(key, value, listing_id)
    return event


__all__ = [
    "EVENT_DICT_VALIDATOR",
    "EventDict",
    "decode_event_dict",
    "event_dict",
    "listing_document",
]
