"""dead_letter_for on hostile records: it never raises and keeps the consumed bytes intact."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from stream_indexer.dlq.letters import MAX_ERROR_MESSAGE_CHARS, dead_letter_for
from stream_indexer.errors import SchemaInvalidError, UndecodableRecordError

HOSTILE_VALUES = [
    None,
    b"",
    b"\xff\xfe\x00 not utf-8",
    b"[" * 100_000,
    b'{"listing_id": 99999999999999999999999, "action": ["index"]}',
    b'{"listing_id": "12", "action": "index", "data": "not an object"}',
    b"\x00" * 1024,
    b'"just a string"',
]
HOSTILE_KEYS = [None, b"", b"-1", b"\xff", b"12" * 1000, b"007"]


def record(key: bytes | None, value: bytes | None, headers: Any = ()) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic="listings.changes",
        partition=3,
        offset=1234,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=-1,
        headers=headers,
    )


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_records_never_raise_and_keep_their_bytes(
    key: bytes | None, value: bytes | None
) -> None:
    headers = [("trace", b"\xff\x00"), ("x-dlq-error-class", b"old")]
    letter = dead_letter_for(
        record(key, value, headers),
        UndecodableRecordError("not JSON"),
        attempts=1,
        consumer_group="g",
    )
    assert (letter.key, letter.value) == (key, value)
    assert letter.headers == (("trace", b"\xff\x00"), ("x-dlq-error-class", b"old"))
    assert (letter.topic, letter.partition, letter.offset) == ("listings.changes", 3, 1234)
    assert letter.listing_id is None or letter.listing_id > 0
    assert letter.error_class == "undecodable"


def test_what_can_be_recovered_is_recovered() -> None:
    value = b'{"listing_id": 42, "action": "index", "version": 1, "data": {"id": 42}}'
    letter = dead_letter_for(
        record(b"42", value), SchemaInvalidError("title missing"), attempts=2, consumer_group="g"
    )
    assert (letter.listing_id, letter.action) == (42, "index")
    assert letter.data is not None and letter.data["listing_id"] == 42
    assert (letter.attempts, letter.consumer_group) == (2, "g")
    assert letter.failed_at.utcoffset() is not None


def test_foreign_errors_are_labelled_by_type_and_empty_messages_by_name() -> None:
    letter = dead_letter_for(record(b"1", b"{}"), KeyError(), attempts=1, consumer_group="g")
    assert letter.error_class == "KeyError"
    assert letter.error_message == "KeyError"


def test_a_huge_error_message_is_capped() -> None:
    error = SchemaInvalidError("x" * (MAX_ERROR_MESSAGE_CHARS + 10))
    letter = dead_letter_for(record(b"1", b"{}"), error, attempts=1, consumer_group="g")
    assert len(letter.error_message) == MAX_ERROR_MESSAGE_CHARS


def test_none_header_values_become_empty_bytes() -> None:
    letter = dead_letter_for(
        record(b"1", b"{}", [("h", None)]), KeyError("k"), attempts=1, consumer_group="g"
    )
    assert letter.headers == (("h", b""),)
