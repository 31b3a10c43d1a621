"""Documents: what one event writes to OpenSearch (a listing document or a tombstone)."""

from __future__ import annotations

from typing import Any

from stream_indexer.bulk import PendingWrite
from stream_indexer.mapping import tombstone_document
from stream_indexer.models import Listing, ListingEvent


def pending_write(
    event: ListingEvent, listing: Listing | None, indexed_at: str, context: Any = None
) -> PendingWrite:
    """The versioned write for `event`: its listing, or a tombstone for a delete (or a thin
    event whose listing the source no longer has)."""
    document: dict[str, Any]
    if event.action == "delete" or listing is None:
        document = tombstone_document(
            event.listing_id, event.version, str(event.event_id), indexed_at
        )
    else:
        document = listing.to_document()
        document["version"] = event.version
        document["indexed_at"] = indexed_at
        document["event_id"] = str(event.event_id)
    return PendingWrite(event.listing_id, event.version, document, context)


def is_tombstone(write: PendingWrite) -> bool:
    return bool(write.document.get("deleted"))
