"""What a dead-letter row can still show about a record that is not valid JSON."""

from __future__ import annotations

import pytest

from stream_indexer.dlq.recover import recover, recover_action, recover_listing_id

EVENT = b'"event_id": "e", "action": "%s", "listing_id": %s, "version": %s'


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_standard_numbers_keep_action_and_listing_id(number: bytes) -> None:
    value = b"{" + EVENT % (b"delete", b"42", number) + b"}"
    found = recover(None, value)
    assert (found.action, found.listing_id) == ("delete", 42)
    assert recover_action(value) == "delete"
    assert recover_listing_id(None, value) == 42


def test_invalid_utf8_elsewhere_keeps_what_is_readable() -> None:
    value = b'{"action": "index", "listing_id": 7, "title": "\xff\xfe"}'
    assert (recover(None, value).action, recover(None, value).listing_id) == ("index", 7)


def test_huge_integers_are_read_but_not_taken_as_a_listing_id() -> None:
    value = b'{"action": "index", "listing_id": 99999999999999999999, "version": NaN}'
    found = recover(None, value)
    assert (found.action, found.listing_id) == ("index", None)


@pytest.mark.parametrize("value", [b"[" * 100_000, b"{" * 100_000, b"NaN", b"[NaN]", b""])
def test_unreadable_or_non_object_values_give_nothing(value: bytes) -> None:
    found = recover(None, value)
    assert (found.data, found.action, found.listing_id) == (None, None, None)


def test_the_key_still_wins() -> None:
    assert recover(b"5", b'{"listing_id": 6, "x": NaN}').listing_id == 5
