"""Record decoding: happy path, each poison kind with its error class, and fuzzing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_indexer.dlq.recover import recover_action, recover_json, recover_listing_id
from stream_indexer.errors import SchemaInvalidError, UndecodableRecordError
from stream_indexer.pipeline.decode import MAX_DEPTH, decode_event

LIMIT = 64 * 1024
MESSAGE_CAP = 500


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "action": "index",
        "listing_id": 42,
        "version": 3,
        "occurred_at": "2024-06-01T12:00:00Z",
        "data": {
            "id": 42,
            "title": "Oak table",
            "price": 10.5,
            "status": "active",
            "updated_at": "2024-06-01T12:00:00Z",
            "attributes": {"material": "oak"},
            "images": ["https://img.example.com/42/1.jpg"],
            "location": {"lat": 1.0, "lon": 2.0},
        },
    }
    base.update(changes)
    return base


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def nested(depth: int) -> Any:
    """A value whose deepest container is at `depth` levels (a bare scalar for depth 0)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def undecodable(key: bytes | None, value: bytes | None, max_bytes: int = LIMIT) -> str:
    with pytest.raises(UndecodableRecordError) as exc:
        decode_event(key, value, max_bytes=max_bytes)
    return str(exc.value)


def schema_invalid(key: bytes | None, value: bytes | None) -> str:
    with pytest.raises(SchemaInvalidError) as exc:
        decode_event(key, value, max_bytes=LIMIT)
    return str(exc.value)


# --- happy path ---------------------------------------------------------------------------


def test_decodes_a_valid_event_with_its_key() -> None:
    parsed = decode_event(b"42", encode(event()), max_bytes=LIMIT)
    assert parsed.listing_id == 42
    assert parsed.version == 3
    assert parsed.data is not None and parsed.data.title == "Oak table"


def test_missing_key_is_accepted() -> None:
    assert decode_event(None, encode(event()), max_bytes=LIMIT).listing_id == 42


def test_key_with_leading_zeros_is_the_same_id() -> None:
    assert decode_event(b"0042", encode(event()), max_bytes=LIMIT).listing_id == 42


def test_value_at_exactly_the_limit_is_parsed() -> None:
    value = encode(event())
    assert decode_event(b"42", value, max_bytes=len(value)).listing_id == 42


def test_unknown_fields_do_not_fail_decoding() -> None:
    value = encode(event(extra={"nested": [1, 2, {"a": "b"}]}))
    assert decode_event(b"42", value, max_bytes=LIMIT).listing_id == 42


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[{" * 200 + '\\"' + "}]" * 200
    value = encode(event(extra=text, note=["[[[[", "{{{{"] * 20))
    assert decode_event(b"42", value, max_bytes=LIMIT).listing_id == 42


def test_nesting_of_exactly_max_depth_is_accepted() -> None:
    # the event object itself is level 1
    value = encode(event(extra=nested(MAX_DEPTH - 1)))
    assert decode_event(b"42", value, max_bytes=LIMIT).listing_id == 42


# --- undecodable --------------------------------------------------------------------------


def test_kafka_tombstone_is_undecodable() -> None:
    assert "no value" in undecodable(b"42", None)


def test_oversized_value_is_refused_before_parsing() -> None:
    value = b"{" + b" " * 2000  # not even JSON: proves no parse happened
    message = undecodable(b"42", value, max_bytes=1024)
    assert "2001 bytes" in message
    assert "1024-byte limit" in message


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xfe{}",
        encode(event()).replace(b"Oak table", b"Oak \xc3\x28able"),
        b'{"a": "\xed\xa0\x80"}',
    ],
)
def test_invalid_utf8_is_undecodable(value: bytes) -> None:
    assert "not valid UTF-8" in undecodable(b"42", value)


@pytest.mark.parametrize(
    "value",
    [b'{"action": ', b"{'a': 1}", b'{"a": 1} trailing', b'{"a": "\\ud800"}', b"nope"],
)
def test_invalid_json_is_undecodable(value: bytes) -> None:
    assert "not valid JSON" in undecodable(b"42", value)


@pytest.mark.parametrize("value", [b"", b"   \n"])
def test_empty_value_is_undecodable(value: bytes) -> None:
    assert "empty" in undecodable(None, value)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"[1, 2]", "array"),
        (b'"event"', "string"),
        (b"42", "number"),
        (b"true", "boolean"),
        (b"null", "null"),
    ],
)
def test_json_that_is_not_an_object_is_undecodable(value: bytes, kind: str) -> None:
    message = undecodable(None, value)
    assert kind in message
    assert "expected an object" in message


@pytest.mark.parametrize("depth", [MAX_DEPTH, 150, 250, 100_000])
def test_deep_nesting_is_undecodable(depth: int) -> None:
    value = encode(event(extra=nested(depth))) if depth < 500 else b"[" * depth + b"]" * depth
    assert f"deeper than {MAX_DEPTH}" in undecodable(b"42", value, max_bytes=10**6)


def test_unclosed_deep_nesting_does_not_recurse() -> None:
    assert f"deeper than {MAX_DEPTH}" in undecodable(None, b'{"a":' * 50_000, max_bytes=10**6)


def test_deep_nesting_wins_over_schema_errors() -> None:
    value = encode(event(action="bogus", extra=nested(60)))
    assert "deeper than" in undecodable(b"42", value)


# --- schema invalid -----------------------------------------------------------------------


def test_schema_error_names_the_field_path() -> None:
    bad = event()
    bad["data"]["title"] = ""
    message = schema_invalid(b"42", encode(bad))
    assert message.startswith("data.title: ")
    assert "at least 1 character" in message


def test_data_id_mismatch_is_schema_invalid() -> None:
    bad = event()
    bad["data"]["id"] = 43
    assert "must equal listing_id" in schema_invalid(b"42", encode(bad))


@pytest.mark.parametrize(
    "changes",
    [{"action": "upsert"}, {"listing_id": 0}, {"version": -1}, {"event_id": "x"}, {"data": []}],
)
def test_contract_violations_are_schema_invalid(changes: dict[str, Any]) -> None:
    (field,) = changes
    assert field in schema_invalid(None, encode(event(**changes)))


def test_many_errors_are_summarised_within_the_cap() -> None:
    bad = event(action="x", listing_id=-1, version=-1, occurred_at="x", event_id="x")
    message = schema_invalid(None, encode(bad))
    assert "more)" in message
    assert len(message) <= MESSAGE_CAP


def test_message_never_contains_the_payload() -> None:
    secret = "s3cr3t-" + "x" * 5000
    bad = event()
    bad["data"]["title"] = secret
    message = schema_invalid(b"42", encode(bad))
    assert "s3cr3t" not in message
    assert len(message) <= MESSAGE_CAP


def test_huge_attribute_key_is_truncated_in_the_path() -> None:
    bad = event()
    bad["data"]["attributes"] = {"k" * 5000: 1}
    message = schema_invalid(b"42", encode(bad))
    assert len(message) <= MESSAGE_CAP
    assert message.startswith("data.attributes.")


@pytest.mark.parametrize("key", [b"abc", b"-42", b"+42", b" 42", b"4 2", b"", "٤٢".encode()])
def test_key_that_is_not_decimal_is_schema_invalid(key: bytes) -> None:
    assert "not a decimal listing id" in schema_invalid(key, encode(event()))


def test_key_that_differs_from_listing_id_is_schema_invalid() -> None:
    message = schema_invalid(b"43", encode(event()))
    assert "b'43'" in message
    assert "listing_id 42" in message


def test_huge_key_is_truncated_in_the_message() -> None:
    message = schema_invalid(b"9" * 10_000, encode(event()))
    assert "10000 bytes" in message
    assert len(message) <= 200


# --- fuzzing ------------------------------------------------------------------------------


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=30,
    )


# Text a producer's JSON encoder can emit as valid Unicode (no lone surrogates).
unicode_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))

keys = (
    st.none()
    | st.binary(max_size=24)
    | st.integers(min_value=-5, max_value=10**20).map(lambda n: str(n).encode())
)


@settings(max_examples=300, deadline=None)
@given(key=keys, value=st.none() | st.binary(max_size=256), max_bytes=st.integers(0, 300))
def test_arbitrary_bytes_only_raise_poison_errors(
    key: bytes | None, value: bytes | None, max_bytes: int
) -> None:
    try:
        decode_event(key, value, max_bytes=max_bytes)
    except (UndecodableRecordError, SchemaInvalidError) as exc:
        assert len(str(exc)) <= MESSAGE_CAP
    listing_id = recover_listing_id(key, value)
    assert listing_id is None or listing_id > 0
    assert recover_action(value) in (None, "index", "delete")
    assert recover_json(value) is None or isinstance(recover_json(value), dict)


@settings(max_examples=300, deadline=None)
@given(key=keys, document=json_values(st.text()))
def test_arbitrary_json_only_raises_poison_errors(key: bytes | None, document: Any) -> None:
    value = json.dumps(document).encode()
    try:
        decode_event(key, value, max_bytes=LIMIT)
    except (UndecodableRecordError, SchemaInvalidError) as exc:
        assert len(str(exc)) <= MESSAGE_CAP
        if not isinstance(document, dict):
            assert isinstance(exc, UndecodableRecordError)


@settings(max_examples=200, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(["event_id", "action", "listing_id", "version", "occurred_at", "data"]),
        json_values(unicode_text),
        max_size=3,
    ),
    key=keys,
)
def test_mutated_events_only_raise_poison_errors(
    changes: dict[str, Any], key: bytes | None
) -> None:
    value = json.dumps(event(**changes)).encode()
    try:
        parsed = decode_event(key, value, max_bytes=LIMIT)
    except UndecodableRecordError as exc:
        # a JSON object within the size limit is undecodable only for its nesting
        assert f"deeper than {MAX_DEPTH}" in str(exc)
    except SchemaInvalidError as exc:
        assert len(str(exc)) <= MESSAGE_CAP
    else:
        assert parsed.listing_id > 0


@settings(max_examples=200, deadline=None)
@given(value=st.binary(min_size=1, max_size=128))
def test_invalid_utf8_is_always_undecodable(value: bytes) -> None:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(UndecodableRecordError):
            decode_event(None, value, max_bytes=LIMIT)
