"""Documents: what one event writes to OpenSearch (a listing document or a tombstone)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from stream_indexer.errors import SchemaInvalidError
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.mapping import tombstone_document
from stream_indexer.pipeline.hydrate import Hydrated

C = TypeVar("C")


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


def pending_writes(
    events: Iterable[tuple[ListingEvent, C]],
    hydrated: Mapping[int, Hydrated],
    indexed_at: str,
) -> tuple[list[PendingWrite], list[tuple[C, SchemaInvalidError]]]:
    """The writes for `events` (each with its context), thin events taking their listing
    from `hydrated` (`hydrate.SourceLoader.load`); a thin event whose source row is invalid
    is returned apart, with its context, for the caller to dead-letter or report."""
    writes: list[PendingWrite] = []
    invalid: list[tuple[C, SchemaInvalidError]] = []
    for event, context in events:
        listing = event.data
        if event.is_thin:
            found = hydrated.get(event.listing_id)
            if isinstance(found, SchemaInvalidError):
                invalid.append((context, found))
                continue
            listing = found
        writes.append(pending_write(event, listing, indexed_at, context))
    return writes, invalid


def is_tombstone(write: PendingWrite) -> bool:
    return bool(write.document.get("deleted"))
