"""Dead-letter context recovery: what the table can still read from a record that failed."""

from __future__ import annotations

import pytest

from stream_indexer.dlq.recover import recover_action, recover_json, recover_listing_id
from unit.pipeline.test_decode import encode, event


def test_recover_listing_id_prefers_the_key() -> None:
    assert recover_listing_id(b"17", encode(event())) == 17


def test_recover_listing_id_falls_back_to_the_value() -> None:
    assert recover_listing_id(None, encode(event())) == 42
    assert recover_listing_id(b"not-a-number", encode(event())) == 42
    assert recover_listing_id(b"0", b'{"listing_id": "77"}') == 77


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"\xff",
        b"[42]",
        b'{"listing_id": true}',
        b'{"listing_id": -5}',
        b'{"listing_id": 1.5}',
        b'{"listing_id": 99999999999999999999999}',
        b'{"listing_id": "x"}',
        b'{"data": {"listing_id": 5}}',
        b"[" * 100_000,
    ],
)
def test_recover_listing_id_gives_none_when_nothing_fits(value: bytes | None) -> None:
    assert recover_listing_id(None, value) is None


def test_recover_action() -> None:
    assert recover_action(encode(event(action="delete"))) == "delete"
    assert recover_action(encode(event())) == "index"
    for value in [None, b"x", b'{"action": "upsert"}', b'["index"]', b'{"action": 1}']:
        assert recover_action(value) is None


def test_recover_json() -> None:
    assert recover_json(b'{"a": [1]}') == {"a": [1]}
    for value in [None, b"", b"[1]", b'"s"', b"{", b"\xff", b"{" * 100_000]:
        assert recover_json(value) is None
