"""Events to writes: documents, tombstones, and thin events resolved from the source rows."""

from __future__ import annotations

from typing import Any

from stream_indexer.errors import SchemaInvalidError
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.pipeline.documents import is_tombstone, pending_writes

AT = "2026-11-29T00:00:00+00:00"


def _listing(listing_id: int) -> dict[str, Any]:
    return {
        "id": listing_id,
        "title": f"listing {listing_id}",
        "price": 10,
        "status": "active",
        "updated_at": AT,
    }


def _event(listing_id: int, action: str = "index", *, thin: bool = False) -> ListingEvent:
    body: dict[str, Any] = {
        "event_id": f"00000000-0000-4000-8000-{listing_id:012d}",
        "action": action,
        "listing_id": listing_id,
        "version": 100 + listing_id,
        "occurred_at": AT,
    }
    if action == "index" and not thin:
        body["data"] = _listing(listing_id)
    return ListingEvent.model_validate(body)


def test_each_kind_of_event_gets_its_write_and_invalid_source_rows_come_back_apart() -> None:
    invalid = SchemaInvalidError("source row for listing 4 is invalid")
    events = [
        (_event(1), "ctx1"),
        (_event(2, "delete"), "ctx2"),
        (_event(3, thin=True), "ctx3"),
        (_event(4, thin=True), "ctx4"),
        (_event(5, thin=True), "ctx5"),
    ]
    hydrated = {3: Listing.model_validate(_listing(3)), 4: invalid, 5: None}
    writes, rejected = pending_writes(events, hydrated, AT)

    assert rejected == [("ctx4", invalid)]
    assert [(w.listing_id, w.version, w.context) for w in writes] == [
        (1, 101, "ctx1"),
        (2, 102, "ctx2"),
        (3, 103, "ctx3"),
        (5, 105, "ctx5"),
    ]
    assert [is_tombstone(w) for w in writes] == [False, True, False, True]
    assert writes[0].document["title"] == "listing 1"
    assert writes[2].document["title"] == "listing 3"
    assert all(w.document["indexed_at"] == AT for w in writes)
