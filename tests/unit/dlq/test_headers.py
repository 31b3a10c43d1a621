"""The x-dlq-* headers of a DLQ topic record: complete, replaced on re-publish, capped safely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from stream_indexer.dlq.headers import (
    MAX_ERROR_MESSAGE_BYTES,
    cap_utf8,
    dead_letter_headers,
    strip_dlq_headers,
)
from stream_indexer.dlq.record import DeadLetter

DLQ_NAMES = [
    "x-dlq-original-topic",
    "x-dlq-original-partition",
    "x-dlq-original-offset",
    "x-dlq-original-timestamp",
    "x-dlq-consumer-group",
    "x-dlq-error-class",
    "x-dlq-error-message",
    "x-dlq-attempts",
    "x-dlq-failed-at",
]


def letter(**changes: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "topic": "listings.changes",
        "partition": 3,
        "offset": 12345,
        "timestamp_ms": 1_700_000_000_123,
        "key": b"42",
        "value": b'{"action": "index"}',
        "headers": (("trace-id", b"\x00\xffabc"), ("source", b"api")),
        "listing_id": 42,
        "action": "index",
        "data": {"action": "index"},
        "error_class": "schema_invalid",
        "error_message": "listing_id: must be > 0",
        "attempts": 2,
        "consumer_group": "stream-indexer",
        "failed_at": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    }
    fields.update(changes)
    return DeadLetter(**fields)


def test_headers_keep_originals_first_and_add_every_dlq_header_once() -> None:
    headers = dead_letter_headers(letter())

    assert headers[:2] == [("trace-id", b"\x00\xffabc"), ("source", b"api")]
    assert [name for name, _ in headers[2:]] == DLQ_NAMES
    values = dict(headers)
    assert values["x-dlq-original-topic"] == b"listings.changes"
    assert values["x-dlq-original-partition"] == b"3"
    assert values["x-dlq-original-offset"] == b"12345"
    assert values["x-dlq-original-timestamp"] == b"1700000000123"
    assert values["x-dlq-consumer-group"] == b"stream-indexer"
    assert values["x-dlq-error-class"] == b"schema_invalid"
    assert values["x-dlq-error-message"] == b"listing_id: must be > 0"
    assert values["x-dlq-attempts"] == b"2"
    assert values["x-dlq-failed-at"] == b"2024-05-01T12:00:00.123Z"


def test_republishing_replaces_earlier_dlq_headers() -> None:
    old = (
        ("x-dlq-error-message", b"first failure"),
        ("keep", b"1"),
        ("X-DLQ-Attempts", b"9"),
        ("x-dlq-something-older", b"gone"),
        ("x-replay-count", b"1"),
    )
    headers = dead_letter_headers(letter(headers=old))

    names = [name for name, _ in headers]
    assert names == ["keep", "x-replay-count", *DLQ_NAMES]
    assert dict(headers)["x-dlq-error-message"] == b"listing_id: must be > 0"


def test_strip_keeps_order_and_duplicates_of_other_headers() -> None:
    headers = [("a", b"1"), ("x-dlq-attempts", b"3"), ("a", b"2"), ("b", b"")]
    assert strip_dlq_headers(headers) == [("a", b"1"), ("a", b"2"), ("b", b"")]


def test_missing_timestamp_is_kafkas_no_timestamp() -> None:
    values = dict(dead_letter_headers(letter(timestamp_ms=None)))
    assert values["x-dlq-original-timestamp"] == b"-1"


def test_failed_at_is_written_in_utc() -> None:
    cest = timezone(timedelta(hours=2))
    at = datetime(2024, 5, 1, 14, 0, 0, tzinfo=cest)
    values = dict(dead_letter_headers(letter(failed_at=at)))
    assert values["x-dlq-failed-at"] == b"2024-05-01T12:00:00.000Z"


def test_naive_failed_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        letter(failed_at=datetime(2024, 5, 1, 12, 0, 0))


def test_short_message_is_unchanged() -> None:
    assert cap_utf8("ok") == b"ok"
    text = "x" * MAX_ERROR_MESSAGE_BYTES
    assert cap_utf8(text) == text.encode()


@pytest.mark.parametrize("char", ["é", "€", "𝄞"])  # 2, 3 and 4 bytes in UTF-8
@pytest.mark.parametrize("shift", range(4))
def test_cap_cuts_on_a_character_boundary(char: str, shift: int) -> None:
    # Place a multi-byte character across the cut point, at every byte offset.
    text = "a" * (MAX_ERROR_MESSAGE_BYTES - 3 - shift) + char * 10
    capped = cap_utf8(text)

    assert len(capped) <= MAX_ERROR_MESSAGE_BYTES
    decoded = capped.decode("utf-8")  # strict: a cut character would raise here
    assert decoded.endswith("…")
    assert text.startswith(decoded[:-1])
    # Nothing more was dropped than needed to fit the character and the mark.
    assert len(capped) > MAX_ERROR_MESSAGE_BYTES - len(char.encode())


def test_cap_applies_to_the_error_message_header() -> None:
    message = "€" * 5000  # 15,000 bytes
    value = dict(dead_letter_headers(letter(error_message=message)))["x-dlq-error-message"]
    assert len(value) <= MAX_ERROR_MESSAGE_BYTES
    assert value.decode("utf-8").rstrip("…") == "€" * ((MAX_ERROR_MESSAGE_BYTES - 3) // 3)


def test_unencodable_message_does_not_raise() -> None:
    value = dict(dead_letter_headers(letter(error_message="bad \udcff byte")))
    assert value["x-dlq-error-message"] == b"bad \\udcff byte"
