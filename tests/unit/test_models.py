"""The event contract: every cap and rule of ListingEvent / Listing (pure pydantic, no server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from stream_indexer.models import (
    MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_DESCRIPTION_CHARS,
    MAX_IMAGES,
    MAX_LONG,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    Listing,
    ListingEvent,
)


def listing(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 42,
        "title": "Oak table",
        "price": 10.5,
        "status": "active",
        "updated_at": "2024-06-01T12:00:00Z",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "action": "index",
        "listing_id": 42,
        "version": 1,
        "occurred_at": "2024-06-01T12:00:00Z",
        "data": listing(),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def error_types(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[Any, ...]]:
    return {(tuple(e["loc"]), e["type"]) for e in exc.value.errors()}


def test_minimal_index_event_is_valid() -> None:
    parsed = ListingEvent.model_validate(event())
    assert parsed.data is not None
    assert parsed.data.updated_at == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert not parsed.is_thin


def test_thin_index_event_and_delete_without_data() -> None:
    assert ListingEvent.model_validate(event(data=...)).is_thin
    delete = ListingEvent.model_validate(event(action="delete", data=...))
    assert delete.action == "delete"
    assert not delete.is_thin


@pytest.mark.parametrize("field", ["event_id", "action", "listing_id", "version", "occurred_at"])
def test_required_event_fields(field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ListingEvent.model_validate(event(**{field: ...}))
    assert ((field,), "missing") in error_types(exc)


@pytest.mark.parametrize("field", ["id", "title", "price", "status", "updated_at"])
def test_required_listing_fields(field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Listing.model_validate(listing(**{field: ...}))
    assert ((field,), "missing") in error_types(exc)


@pytest.mark.parametrize(
    ("changes", "loc", "kind"),
    [
        ({"action": "upsert"}, ("action",), "literal_error"),
        ({"event_id": "not-a-uuid"}, ("event_id",), "uuid_parsing"),
        ({"listing_id": 0}, ("listing_id",), "greater_than"),
        ({"listing_id": -1}, ("listing_id",), "greater_than"),
        ({"listing_id": MAX_LONG + 1}, ("listing_id",), "less_than_equal"),
        ({"version": -1}, ("version",), "greater_than_equal"),
        ({"version": MAX_LONG + 1}, ("version",), "less_than_equal"),
        ({"occurred_at": "2024-06-01T12:00:00"}, ("occurred_at",), "timezone_aware"),
    ],
)
def test_event_field_rules(changes: dict[str, Any], loc: tuple[str, ...], kind: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ListingEvent.model_validate(event(**changes))
    assert (loc, kind) in error_types(exc)


def test_version_zero_and_max_long_are_valid() -> None:
    assert ListingEvent.model_validate(event(version=0)).version == 0
    assert ListingEvent.model_validate(event(version=MAX_LONG)).version == MAX_LONG


def test_data_id_must_equal_listing_id() -> None:
    with pytest.raises(ValidationError, match=r"data\.id \(43\) must equal listing_id \(42\)"):
        ListingEvent.model_validate(event(data=listing(id=43)))


def test_data_id_is_not_checked_for_thin_events() -> None:
    assert ListingEvent.model_validate(event(listing_id=7, data=...)).listing_id == 7


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"title": ""}, "string_too_short"),
        ({"title": "x" * (MAX_TITLE_CHARS + 1)}, "string_too_long"),
        ({"price": -0.01}, "greater_than_equal"),
        ({"price": float("nan")}, "finite_number"),
        ({"price": float("inf")}, "finite_number"),
        ({"price": 1e16}, "less_than_equal"),
        ({"status": ""}, "string_too_short"),
        ({"status": "s" * 33}, "string_too_long"),
        ({"description": "d" * (MAX_DESCRIPTION_CHARS + 1)}, "string_too_long"),
        ({"currency": "EURO"}, "string_too_long"),
        ({"currency": "E"}, "string_too_short"),
        ({"condition": "c" * 33}, "string_too_long"),
        ({"city": "c" * 201}, "string_too_long"),
        ({"country": "c" * 201}, "string_too_long"),
        ({"user_id": -1}, "greater_than_equal"),
        ({"category_id": -1}, "greater_than_equal"),
        ({"views_count": -1}, "greater_than_equal"),
        ({"updated_at": "2024-06-01T12:00:00"}, "timezone_aware"),
        ({"created_at": "2024-06-01T12:00:00"}, "timezone_aware"),
        ({"id": 0}, "greater_than"),
    ],
)
def test_listing_field_caps(changes: dict[str, Any], kind: str) -> None:
    (field,) = changes
    with pytest.raises(ValidationError) as exc:
        Listing.model_validate(listing(**changes))
    assert ((field,), kind) in error_types(exc)


def test_caps_are_inclusive() -> None:
    parsed = Listing.model_validate(
        listing(
            title="t" * MAX_TITLE_CHARS,
            description="d" * MAX_DESCRIPTION_CHARS,
            price=0,
            attributes={f"k{i}": "v" * MAX_ATTRIBUTE_VALUE_CHARS for i in range(MAX_ATTRIBUTES)},
            images=["https://img.example.com/" + "a" * (MAX_URL_CHARS - 24)] * MAX_IMAGES,
        )
    )
    assert len(parsed.title) == MAX_TITLE_CHARS
    assert parsed.attributes is not None and len(parsed.attributes) == MAX_ATTRIBUTES
    assert parsed.images is not None and len(parsed.images[0]) == MAX_URL_CHARS


def test_location_bounds() -> None:
    assert Listing.model_validate(listing(location={"lat": -90, "lon": 180})).location is not None
    for bad in ({"lat": 90.1, "lon": 0}, {"lat": 0, "lon": -180.1}, {"lat": 1}):
        with pytest.raises(ValidationError):
            Listing.model_validate(listing(location=bad))


def test_attribute_count_cap() -> None:
    too_many = {f"k{i}": i for i in range(MAX_ATTRIBUTES + 1)}
    with pytest.raises(ValidationError) as exc:
        Listing.model_validate(listing(attributes=too_many))
    assert (("attributes",), "too_long") in error_types(exc)


def test_attribute_key_caps() -> None:
    with pytest.raises(ValidationError) as exc:
        Listing.model_validate(listing(attributes={"k" * (MAX_ATTRIBUTE_KEY_CHARS + 1): 1}))
    assert any(kind == "string_too_long" for _, kind in error_types(exc))
    with pytest.raises(ValidationError):
        Listing.model_validate(listing(attributes={"": 1}))


@pytest.mark.parametrize("value", ["v" * (MAX_ATTRIBUTE_VALUE_CHARS + 1), [1, 2], {"x": 1}])
def test_attribute_values_are_bounded_scalars(value: Any) -> None:
    with pytest.raises(ValidationError):
        Listing.model_validate(listing(attributes={"k": value}))


@pytest.mark.parametrize("value", ["oak", 6, 1.5, True, None, -MAX_LONG])
def test_attribute_scalar_values_are_kept(value: Any) -> None:
    parsed = Listing.model_validate(listing(attributes={"k": value}))
    assert parsed.attributes == {"k": value}


def test_attribute_float_must_be_finite() -> None:
    with pytest.raises(ValidationError):
        Listing.model_validate(listing(attributes={"k": float("inf")}))


def test_image_caps() -> None:
    with pytest.raises(ValidationError) as exc:
        Listing.model_validate(listing(images=["https://x.example/a.jpg"] * (MAX_IMAGES + 1)))
    assert (("images",), "too_long") in error_types(exc)
    for bad in ["ftp://x.example/a.jpg", "not a url", "https://x.example/a b.jpg"]:
        with pytest.raises(ValidationError):
            Listing.model_validate(listing(images=[bad]))
    long_url = "https://x.example/" + "a" * MAX_URL_CHARS
    with pytest.raises(ValidationError) as exc:
        Listing.model_validate(listing(images=[long_url]))
    assert (("images", 0), "string_too_long") in error_types(exc)


def test_to_document_drops_unknown_and_absent_fields() -> None:
    parsed = Listing.model_validate(
        listing(surprise="dropped", nested={"deep": [1]}, city="Berlin", description=None)
    )
    document = parsed.to_document()
    assert "surprise" not in document
    assert "nested" not in document
    assert "description" not in document
    assert document["city"] == "Berlin"
    assert set(document) <= set(Listing.model_fields)


def test_unknown_event_fields_are_ignored() -> None:
    parsed = ListingEvent.model_validate(event(extra_field="x"))
    assert "extra_field" not in parsed.model_dump()


def test_models_are_frozen() -> None:
    parsed = ListingEvent.model_validate(event())
    with pytest.raises(ValidationError):
        parsed.version = 2  # type: ignore[misc]
