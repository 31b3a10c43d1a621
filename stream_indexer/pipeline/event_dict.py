"""Hot-path decoding (pipeline, per record): the event contract validated into plain dicts.

`ListingEvent.model_validate_json` spends about 40 % of its time building model instances
(and later freeing them), which the worker only reads a few fields from. So the worker
validates with `event_dicts.SPARSE_EVENT_DICT_VALIDATOR`, a pydantic-core validator **compiled
from the models' own core schema** (in the core, since the producer uses it too): the same
field schemas, caps and rules, yielding plain dicts in which a field the record left out
stays out (so a listing's document is usually a plain copy, with no nulls to strip). The
models stay the one source of the contract; nothing is restated here.

A record this validator refuses is decoded again by `decode.decode_event`, so what a bad
record becomes (error class and message) is exactly what the models say. A hypothesis test
(`tests/unit/pipeline/test_event_dict.py`) holds both validators to the same decision and
the same values over generated valid and invalid events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from pydantic_core import SchemaValidator, ValidationError

from stream_indexer.event_dicts import (
    EVENT_DICT_VALIDATOR,
    SPARSE_EVENT_DICT_VALIDATOR,
    EventDict,
    event_dict,
)
from stream_indexer.pipeline.decode import (
    MAX_DEPTH,
    check_after_validation,
    decode_event,
    precheck,
)


def listing_document(data: dict[str, Any], *, reuse: bool = False) -> dict[str, Any]:
    """The `_source` of a validated listing dict: `Listing.to_document()` of the same event.

    A copy (the caller adds the service's metadata to it), unless `reuse`: then `data`
    itself when it holds no null, for a caller that owns it and reads the listing no more
    (the worker: half a microsecond per document, and one dict less to free)."""
    if None in data.values():  # a field given as null (a left-out one is absent already)
        return {name: value for name, value in data.items() if value is not None}
    return data if reuse else dict(data)


#: the Unix epoch as the validator parses it: pydantic-core gives every UTC datetime it
#: makes one shared tzinfo object, and this one has it
_UTC_EPOCH: datetime = SchemaValidator({"type": "datetime"}).validate_json(
    b'"1970-01-01T00:00:00Z"'
)


def epoch_seconds(moment: datetime) -> float:
    """`moment.timestamp()`, at a third of its cost for the validator's UTC datetimes.

    `timestamp()` asks pydantic-core's tzinfo for its offset twice (0.46 µs; the worker
    does it for every written document, for the freshness histogram). Two datetimes with
    the same tzinfo object subtract without asking; any other tzinfo gets `timestamp()`."""
    if moment.tzinfo is _UTC_EPOCH.tzinfo:
        return (moment - _UTC_EPOCH).total_seconds()
    return moment.timestamp()


def decode_event_dict(key: bytes | None, value: bytes | None, *, max_bytes: int) -> EventDict:
    """`decode.decode_event`, yielding the event as a dict; raises the same poison errors."""
    if value is None or len(value) > max_bytes:
        value = precheck(value, max_bytes)  # raises: no value, or one too large to read
    try:
        event = cast(EventDict, SPARSE_EVENT_DICT_VALIDATOR.validate_json(value))
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
    "SPARSE_EVENT_DICT_VALIDATOR",
    "EventDict",
    "decode_event_dict",
    "epoch_seconds",
    "event_dict",
    "listing_document",
]
