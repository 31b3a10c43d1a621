"""Event contract: the pydantic models every producer and the consumer validate against.

These models are the source of truth; `schemas/listing_event.v1.json` is generated from
them (`python -m stream_indexer.devtools.schema_export`) and a test fails when the two drift.
Every string, list and number is capped so that no event can make OpenSearch reject a
term (32,766-byte limit) or blow up a worker's memory.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

MAX_LONG = 2**63 - 1
MAX_TITLE_CHARS = 500
MAX_DESCRIPTION_CHARS = 20_000
MAX_SHORT_TEXT_CHARS = 200
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY_CHARS = 100
MAX_ATTRIBUTE_VALUE_CHARS = 1_000
MAX_IMAGES = 50
MAX_URL_CHARS = 2_048

Long = Annotated[int, Field(ge=0, le=MAX_LONG)]
PositiveLong = Annotated[int, Field(gt=0, le=MAX_LONG)]
ShortText = Annotated[str, StringConstraints(max_length=MAX_SHORT_TEXT_CHARS)]
AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS)]
AttributeValue = (
    Annotated[str, StringConstraints(max_length=MAX_ATTRIBUTE_VALUE_CHARS)]
    | Annotated[int, Field(ge=-MAX_LONG, le=MAX_LONG)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
    | None
)
ImageUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=MAX_URL_CHARS)]


class GeoPoint(BaseModel):
    """A listing's location, stored as an OpenSearch geo_point."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Listing(BaseModel):
    """The listing snapshot carried by an `index` event; unknown fields are dropped."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: PositiveLong
    title: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS)]
    price: Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]
    status: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    updated_at: AwareDatetime
    user_id: Long | None = None
    category_id: Long | None = None
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    condition: Annotated[str, StringConstraints(max_length=32)] | None = None
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)] | None = None
    location: GeoPoint | None = None
    city: ShortText | None = None
    country: ShortText | None = None
    attributes: (
        Annotated[dict[AttributeKey, AttributeValue], Field(max_length=MAX_ATTRIBUTES)] | None
    ) = None
    images: Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)] | None = None
    views_count: Long | None = None
    created_at: AwareDatetime | None = None

    def to_document(self) -> dict[str, Any]:
        """The `_source` fields for OpenSearch: known fields only, absent ones left out.

        Equal to `model_dump(exclude_none=True)` (a unit test holds them together) at half
        its cost: this runs once per indexed document.
        """
        document = {name: value for name, value in self.__dict__.items() if value is not None}
        location = self.location
        if location is not None:
            document["location"] = {"lat": location.lat, "lon": location.lon}
        return document


class ListingEvent(BaseModel):
    """One listing change: the value of one record on the listings topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: UUID
    action: Literal["index", "delete"]
    listing_id: PositiveLong
    version: Long
    occurred_at: AwareDatetime
    data: Listing | None = None

    @model_validator(mode="after")
    def _data_matches_listing(self) -> ListingEvent:
        if self.data is not None and self.data.id != self.listing_id:
            raise ValueError(f"data.id ({self.data.id}) must equal listing_id ({self.listing_id})")
        return self

    @property
    def is_thin(self) -> bool:
        """An index event without a snapshot: the listing is loaded from the source DB."""
        return self.action == "index" and self.data is None


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema published as schemas/listing_event.v1.json."""
    schema = ListingEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://stream-indexer.dev/schemas/listing_event.v1.json"
    return schema


__all__ = ["GeoPoint", "Listing", "ListingEvent", "event_json_schema"]
