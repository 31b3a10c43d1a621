"""Redaction of PII listing fields in dead-letter payloads."""

from __future__ import annotations

import hashlib

import orjson

from stream_indexer.dlq.redaction import Redactor

EVENT = {
    "action": "index",
    "listing_id": 1,
    "data": {"id": 1, "title": "Bike", "description": "call me at 555", "city": "Berlin"},
}


def test_drop_and_hash_rewrite_value_and_parsed_object() -> None:
    value, parsed = Redactor(drop=["description"], hash_=["city"]).apply(orjson.dumps(EVENT))
    assert value is not None and parsed is not None
    stored = orjson.loads(value)
    assert "description" not in stored["data"]
    expected = "sha256:" + hashlib.sha256(orjson.dumps("Berlin")).hexdigest()
    assert stored["data"]["city"] == expected
    assert stored["data"]["title"] == "Bike"
    assert parsed == stored
    assert b"555" not in value and b"Berlin" not in value


def test_values_without_listing_fields_are_kept_byte_for_byte() -> None:
    raw = b'{"action": "delete", "listing_id": 1}'
    assert Redactor(drop=["description"]).apply(raw) == (raw, orjson.loads(raw))
    assert Redactor(drop=["description"]).apply(b"\xff not json") == (b"\xff not json", None)
    assert Redactor(drop=["description"]).apply(None) == (None, None)


def test_empty_redactor_is_falsy() -> None:
    assert not Redactor()
    assert Redactor(hash_=["city"])
