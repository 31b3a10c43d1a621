"""Hypothesis strategies for listing events: valid ones, and ones that break one or two fields
(every cap, both sides of each bound). Shared by the tests that hold the fast validator
(`stream_indexer.event_dicts`) to the models, on the consumer's and the producer's paths."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

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
)

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
        valid,
        # a key must be hashable: `capped_text` also yields a list for "anything"
        st.dictionaries(
            keys_any.filter(lambda key: not isinstance(key, list)), values_any, max_size=4
        ),
        over,
        st.just([]),
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
