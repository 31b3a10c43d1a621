"""Producer validation and encoding: bad events are refused with the field named."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from stream_indexer.errors import SchemaInvalidError
from stream_indexer.models import ListingEvent
from stream_indexer.producer import (
    InvalidEventError,
    delete_event,
    encode_key,
    encode_value,
    index_event,
    validate_event,
    version_from_datetime,
)
from stream_indexer.producer.events import validate_json_line

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def listing(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 42,
        "title": "Oak desk",
        "price": 120.5,
        "status": "active",
        "updated_at": NOW,
    }
    base.update(overrides)
    return base


def test_index_event_round_trips_through_the_consumer_model() -> None:
    event = index_event(listing(), 7, occurred_at=NOW)
    decoded = ListingEvent.model_validate_json(encode_value(event))
    assert decoded == event
    assert decoded.action == "index" and decoded.version == 7 and decoded.data is not None


def test_unknown_listing_fields_and_absent_values_are_not_sent() -> None:
    value = orjson.loads(encode_value(index_event(listing(colour="red"), 1)))
    assert "colour" not in value["data"]
    assert "description" not in value["data"]


def test_key_is_the_listing_id_as_decimal_utf8() -> None:
    assert encode_key(42) == b"42"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"title": ""}, "data.title"),
        ({"price": -1}, "data.price"),
        ({"id": 0}, "data.id"),
        ({"updated_at": "yesterday"}, "data.updated_at"),
        ({"images": ["ftp://x"]}, "data.images.0"),
    ],
)
def test_invalid_listing_is_rejected_naming_the_field(bad: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        index_event(listing(**bad), 1)
    assert field in caught.value.fields
    assert field in str(caught.value)
    assert isinstance(caught.value, SchemaInvalidError)


def test_negative_version_and_listing_id_are_named() -> None:
    with pytest.raises(InvalidEventError) as caught:
        delete_event(0, -1)
    assert set(caught.value.fields) == {"listing_id", "version"}


def test_thin_event_needs_only_the_id() -> None:
    event = index_event({"id": 9}, 3, thin=True)
    assert event.is_thin
    assert "data" not in orjson.loads(encode_value(event))


def test_validate_event_accepts_mappings_and_names_missing_fields() -> None:
    raw = {"event_id": str(uuid.uuid4()), "action": "delete", "listing_id": 5}
    with pytest.raises(InvalidEventError) as caught:
        validate_event(raw)
    assert {"version", "occurred_at"} <= set(caught.value.fields)


@pytest.mark.parametrize(
    ("line", "field"), [(b"{nope", "event"), (b"[1, 2]", "event"), (b'{"action": "x"}', "action")]
)
def test_json_lines_are_validated(line: bytes, field: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        validate_json_line(line)
    assert field in caught.value.fields


def test_version_from_datetime_increases_with_time() -> None:
    later = NOW + timedelta(microseconds=1)
    assert version_from_datetime(later) == version_from_datetime(NOW) + 1
    assert version_from_datetime(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    with pytest.raises(ValueError, match="timezone"):
        version_from_datetime(datetime(2025, 1, 1))
