"""The hot-path validator (typed dicts compiled from the models) and the pydantic models take
the same decision and yield the same values on generated valid and invalid events: every
field, every cap, both poison classes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import SchemaValidator
from support.event_strategies import encode, events, same

from stream_indexer.errors import PoisonRecordError, UndecodableRecordError
from stream_indexer.event_dicts import without_nulls
from stream_indexer.models import ListingEvent
from stream_indexer.pipeline.decode import decode_event
from stream_indexer.pipeline.documents import pending_write, pending_writes_of_dicts
from stream_indexer.pipeline.event_dict import (
    _UTC_EPOCH,
    EVENT_DICT_VALIDATOR,
    SPARSE_EVENT_DICT_VALIDATOR,
    decode_event_dict,
    epoch_seconds,
    event_dict,
    listing_document,
)

LIMIT = 1 << 20


def values() -> st.SearchStrategy[bytes]:
    return st.one_of(
        events().map(encode),
        st.sampled_from([b"", b"{", b"\xff\xfe", b"[1,", b"  ", b'{"a":' * 40 + b"1" + b"}" * 40]),
    )


def keys(value: bytes) -> st.SearchStrategy[bytes | None]:
    try:
        listing_id = json.loads(value).get("listing_id")
    except (ValueError, AttributeError):
        listing_id = None
    exact = [b"%d" % listing_id, b"00%d" % listing_id] if type(listing_id) is int else []
    return st.sampled_from([None, b"x", b"7", *exact])


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_both_validators_decide_alike_and_parse_alike(data: st.DataObject) -> None:
    value = data.draw(values())
    try:
        model: ListingEvent | None = ListingEvent.model_validate_json(value)
    except ValidationError:
        model = None
    try:
        fast: dict[str, Any] | None = EVENT_DICT_VALIDATOR.validate_json(value)
    except ValidationError:
        fast = None
    try:
        sparse: dict[str, Any] | None = SPARSE_EVENT_DICT_VALIDATOR.validate_json(value)
    except ValidationError:
        sparse = None
    assert (model is None) == (fast is None) == (sparse is None), value
    if model is not None and fast is not None and sparse is not None:
        assert same(event_dict(model), fast), value
        # the sparse form: the same values, with what the record left out left out
        assert set(sparse) <= set(fast) and set(sparse.get("data") or {}) <= set(fast["data"] or {})
        assert same(without_nulls(event_dict(model)), without_nulls(sparse)), value
        if model.data is not None:
            assert same(model.data.to_document(), listing_document(fast["data"]))
            assert same(model.data.to_document(), listing_document(sparse["data"]))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_both_decoders_give_the_same_event_or_the_same_poison(data: st.DataObject) -> None:
    value = data.draw(values())
    key = data.draw(keys(value))
    try:
        model: Any = decode_event(key, value, max_bytes=LIMIT)
    except PoisonRecordError as exc:
        model = exc
    try:
        fast: Any = decode_event_dict(key, value, max_bytes=LIMIT)
    except PoisonRecordError as exc:
        fast = exc
    if isinstance(model, PoisonRecordError):
        assert type(fast) is type(model) and str(fast) == str(model)
        return
    assert same(without_nulls(event_dict(model)), without_nulls(fast))
    at = "2026-11-30T00:00:00+00:00"
    expected = pending_write(model, model.data, at, "ctx")
    (write,), _ = pending_writes_of_dicts([(fast, "ctx")], {}, at)
    if not model.is_thin:
        assert (write.listing_id, write.version) == (expected.listing_id, expected.version)
        assert orjson.dumps(write.document) == orjson.dumps(expected.document)


def encode_known_event(event_id: uuid.UUID | None = None) -> bytes:
    return encode(
        {
            "event_id": str(event_id or uuid.uuid4()),
            "action": "index",
            "listing_id": 42,
            "version": 3,
            "occurred_at": "2026-11-29T17:00:00Z",
            "data": {
                "id": 42,
                "title": "t",
                "price": 1,
                "status": "active",
                "updated_at": "2026-11-29T17:00:00Z",
                "location": {"lat": 1, "lon": 2, "alt": 3},
                "surprise": True,
            },
        }
    )


def test_a_known_event_in_both_forms() -> None:
    event_id = uuid.uuid4()
    value = encode_known_event(event_id)
    fast = decode_event_dict(b"42", value, max_bytes=LIMIT)
    assert fast["event_id"] == event_id
    assert listing_document(fast["data"]) == {
        "id": 42,
        "title": "t",
        "price": 1.0,
        "status": "active",
        "updated_at": datetime(2026, 11, 29, 17, tzinfo=UTC),
        "location": {"lat": 1.0, "lon": 2.0},
    }


def test_no_value_and_too_large_are_refused_as_by_the_models() -> None:
    value = encode({"listing_id": 1})
    for record, limit in ((None, LIMIT), (value, len(value) - 1)):
        with pytest.raises(UndecodableRecordError) as fast:
            decode_event_dict(b"1", record, max_bytes=limit)
        with pytest.raises(UndecodableRecordError) as model:
            decode_event(b"1", record, max_bytes=limit)
        assert str(fast.value) == str(model.value)


def test_a_model_rule_the_dicts_cannot_carry_is_refused_at_import() -> None:
    from pydantic import BaseModel, ConfigDict

    from stream_indexer.event_dicts import _as_typed_dicts

    class Stripped(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True)
        name: str

    with pytest.raises(TypeError, match="str_strip_whitespace"):
        _as_typed_dicts(Stripped.__pydantic_core_schema__)


_DATETIMES = SchemaValidator({"type": "datetime"})


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_epoch_seconds_is_the_timestamp_of_a_parsed_datetime(moment: datetime) -> None:
    parsed = _DATETIMES.validate_json(orjson.dumps(moment))
    assert epoch_seconds(parsed) == parsed.timestamp()


def test_a_decoded_utc_time_takes_the_shortcut() -> None:
    # the shortcut needs pydantic-core's one shared UTC tzinfo: the epoch's
    event = decode_event_dict(None, encode_known_event(), max_bytes=LIMIT)
    assert event["occurred_at"].tzinfo is _UTC_EPOCH.tzinfo


def test_the_worker_writes_the_listing_dict_itself_as_its_document() -> None:
    event = decode_event_dict(None, encode_known_event(), max_bytes=LIMIT)
    data = event["data"]
    assert listing_document(data) is not data  # a copy for any other caller
    (write,), _ = pending_writes_of_dicts([(event, None)], {}, "2026-11-30T00:00:00+00:00")
    assert write.document is data  # no copy to make and free per document
    assert listing_document({"id": 1, "city": None}, reuse=True) == {"id": 1}
