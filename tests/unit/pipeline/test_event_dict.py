"""The hot-path validator (typed dicts compiled from the models) and the pydantic models take
the same decision and yield the same values on generated valid and invalid events: every
field, every cap, both poison classes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stream_indexer.errors import PoisonRecordError, UndecodableRecordError
from stream_indexer.models import (
    MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_DESCRIPTION_CHARS,
    MAX_IMAGES,
    MAX_LONG,
    MAX_SHORT_TEXT_CHARS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    ListingEvent,
)
from stream_indexer.pipeline.decode import decode_event
from stream_indexer.pipeline.documents import pending_write, pending_writes_of_dicts
from stream_indexer.pipeline.event_dict import (
    EVENT_DICT_VALIDATOR,
    decode_event_dict,
    event_dict,
    listing_document,
)

LIMIT = 1 << 20
ABSENT = object()
#: JSON tokens orjson will not write (a raw token travels as this string, then is swapped)
RAW = ("NaN", "Infinity", "-Infinity", "1e400", "-0", "1.0", "1e2", "00")


def raw(token: str) -> str:
    return f"__raw_{token}__"


def encode(value: Any) -> bytes:
    """JSON text (stdlib: integers past 64 bits too), raw tokens swapped in."""
    text = json.dumps(value, ensure_ascii=False)
    for token in RAW:
        text = text.replace(json.dumps(raw(token)), token)
    return text.encode()


Pair = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]


def capped_text(cap: int, min_size: int = 0) -> Pair:
    """(valid, any): short text or text exactly at the bounds; also just past them."""
    at = st.sampled_from(sorted({min_size, cap})).map(lambda n: "é" * n)
    past = st.sampled_from([cap + 1, max(0, min_size - 1)]).map(lambda n: "é" * n)
    valid = st.one_of(st.text(min_size=min_size, max_size=max(min_size, 8)), at)
    return valid, st.one_of(valid, past, st.sampled_from([5, None, ["x"]]))


def long_ints(low: int) -> Pair:
    valid = st.one_of(st.sampled_from([low, low + 1, MAX_LONG]), st.integers(low, MAX_LONG))
    edges = [low - 1, MAX_LONG + 1, -MAX_LONG - 1, 2**70]
    odd = ["42", "x", 1.0, 1.5, True, None, raw("1e2"), raw("-0"), raw("00")]
    return valid, st.one_of(valid, st.sampled_from(edges + odd), st.integers(-(2**70), 2**70))


def timestamps() -> Pair:
    aware = st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat())
    offset = st.integers(-23 * 60, 23 * 60).map(
        lambda m: (datetime(2026, 1, 1) + timedelta(minutes=m)).isoformat() + "+05:30"
    )
    valid = st.one_of(
        aware, offset, st.just("2026-11-29T17:00:00Z"), st.integers(0, 2**34), st.just(1.7e9)
    )
    naive = st.datetimes(max_value=datetime(2100, 1, 1)).map(lambda d: d.isoformat())
    bad = st.sampled_from(["2026-13-01T00:00:00Z", "now", "", None, [1]])
    return valid, st.one_of(valid, naive, bad, st.integers(-(2**60), 2**60))


def numbers(low: float, high: float) -> Pair:
    valid = st.one_of(
        st.floats(low, high), st.integers(int(low), int(high)), st.sampled_from([low, high])
    )
    bad = st.one_of(
        st.floats(),
        st.sampled_from([high + 1, low - 1, "3.5", True, None]),
        st.sampled_from(RAW).map(raw),
    )
    return valid, st.one_of(valid, bad)


def optional(pair: Pair) -> Pair:
    valid, anything = pair
    return st.one_of(st.just(ABSENT), st.none(), valid), st.one_of(st.just(ABSENT), anything)


def attributes() -> Pair:
    keys_ok, keys_any = capped_text(MAX_ATTRIBUTE_KEY_CHARS, min_size=1)
    values_ok = st.one_of(
        capped_text(MAX_ATTRIBUTE_VALUE_CHARS)[0],
        st.integers(-MAX_LONG, MAX_LONG),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    )
    values_any = st.one_of(
        values_ok,
        capped_text(MAX_ATTRIBUTE_VALUE_CHARS)[1],
        st.sampled_from([MAX_LONG + 1, [1], {"nested": 1}, raw("NaN")]),
    )
    full = st.just({f"k{i}": i for i in range(MAX_ATTRIBUTES)})
    valid = st.one_of(st.dictionaries(keys_ok, values_ok, max_size=4), full)
    over = st.just({f"k{i}": i for i in range(MAX_ATTRIBUTES + 1)})
    anything = st.one_of(
        valid, st.dictionaries(keys_any, values_any, max_size=4), over, st.just([])
    )
    return valid, anything


def images() -> Pair:
    url_ok = st.one_of(
        st.sampled_from(["https://a.example/1.jpg", "http://b/x"]),
        st.just("https://x/" + "a" * (MAX_URL_CHARS - 10)),
    )
    url_any = st.one_of(
        url_ok,
        st.sampled_from(["ftp://c/x", "https://a b", "", 5, "https://x/" + "a" * MAX_URL_CHARS]),
        st.text(max_size=6),
    )
    full = st.just([f"https://img.example/{i}.jpg" for i in range(MAX_IMAGES)])
    over = st.just([f"https://img.example/{i}.jpg" for i in range(MAX_IMAGES + 1)])
    valid = st.one_of(st.lists(url_ok, max_size=3), full)
    return valid, st.one_of(valid, st.lists(url_any, max_size=3), over, st.just("https://x/y"))


def location() -> Pair:
    valid = st.fixed_dictionaries(
        {"lat": numbers(-90, 90)[0], "lon": numbers(-180, 180)[0]},
        optional={"alt": st.integers()},
    )
    anything = st.one_of(
        valid,
        st.fixed_dictionaries({"lat": numbers(-90, 90)[1], "lon": numbers(-180, 180)[1]}),
        st.sampled_from([{"lat": 1}, [1, 2], "1,2"]),
    )
    return valid, anything


def choose(draw: st.DrawFn, pairs: dict[str, Pair]) -> dict[str, Any]:
    """Every field valid, except (in half the examples) one or two that may be anything;
    now and then a field is left out."""
    names = sorted(pairs)
    wild = set(draw(st.lists(st.sampled_from(names), max_size=2))) if draw(st.booleans()) else set()
    fields = {name: draw(pairs[name][name in wild]) for name in pairs}
    dropped = set(draw(st.lists(st.sampled_from(names), max_size=1)))
    if draw(st.integers(0, 9)):
        dropped = set()
    return {k: v for k, v in fields.items() if v is not ABSENT and k not in dropped}


@st.composite
def listings(draw: st.DrawFn, listing_id: Any) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(["x", [], 1]))
    ids = long_ints(1)
    pairs: dict[str, Pair] = {
        "id": (st.just(listing_id), st.one_of(st.just(listing_id), ids[1])),
        "title": capped_text(MAX_TITLE_CHARS, min_size=1),
        "price": numbers(0, 1e15),
        "status": capped_text(32, min_size=1),
        "updated_at": timestamps(),
        "user_id": optional(long_ints(0)),
        "category_id": optional(long_ints(0)),
        "description": optional(capped_text(MAX_DESCRIPTION_CHARS)),
        "condition": optional(capped_text(32)),
        "currency": optional(capped_text(3, min_size=3)),
        "location": optional(location()),
        "city": optional(capped_text(MAX_SHORT_TEXT_CHARS)),
        "country": optional(capped_text(MAX_SHORT_TEXT_CHARS)),
        "attributes": optional(attributes()),
        "images": optional(images()),
        "views_count": optional(long_ints(0)),
        "created_at": optional(timestamps()),
        "unknown_field": (st.integers(), st.integers()),
    }
    return choose(draw, pairs)


@st.composite
def events(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 40)) == 0:
        return draw(st.sampled_from([[], 1, "x", None, True]))
    ids = long_ints(1)[1] if draw(st.integers(0, 5)) == 0 else st.integers(1, 10**6)
    listing_id = draw(ids)
    event_ids = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex.upper()))
    pairs: dict[str, Pair] = {
        "event_id": (
            event_ids,
            st.one_of(event_ids, st.sampled_from(["not-a-uuid", "", 5, None])),
        ),
        "action": (
            st.sampled_from(["index", "delete"]),
            st.sampled_from(["index", "delete", "update", "INDEX", 1, None]),
        ),
        "listing_id": (st.just(listing_id), st.just(listing_id)),
        "version": long_ints(0),
        "occurred_at": timestamps(),
        "data": (
            st.one_of(st.just(ABSENT), st.none(), listings(listing_id), listings(listing_id)),
            st.one_of(st.just(ABSENT), listings(listing_id)),
        ),
        "extra": (st.just(ABSENT), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    }
    return choose(draw, pairs)


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


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 == 1.0 == True in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b) or (a != a and b != b)


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
    assert (model is None) == (fast is None), value
    if model is not None and fast is not None:
        assert same(event_dict(model), fast), value
        if model.data is not None:
            assert same(model.data.to_document(), listing_document(fast["data"]))


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
    assert same(event_dict(model), fast)
    at = "2026-11-30T00:00:00+00:00"
    expected = pending_write(model, model.data, at, "ctx")
    (write,), _ = pending_writes_of_dicts([(fast, "ctx")], {}, at)
    if not model.is_thin:
        assert (write.listing_id, write.version) == (expected.listing_id, expected.version)
        assert orjson.dumps(write.document) == orjson.dumps(expected.document)


def test_a_known_event_in_both_forms() -> None:
    event_id = uuid.uuid4()
    value = encode(
        {
            "event_id": str(event_id),
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

    from stream_indexer.pipeline.event_dict import _as_typed_dicts

    class Stripped(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True)
        name: str

    with pytest.raises(TypeError, match="str_strip_whitespace"):
        _as_typed_dicts(Stripped.__pydantic_core_schema__)
