"""Documents: what one event writes to OpenSearch (a listing document or a tombstone)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from uuid import UUID

from stream_indexer.errors import SchemaInvalidError
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.opensearch.bulk import PendingWrite
from stream_indexer.opensearch.mapping import tombstone_document
from stream_indexer.pipeline.event_dict import EventDict, listing_document
from stream_indexer.pipeline.hydrate import Hydrated

C = TypeVar("C")


def pending_write(
    event: ListingEvent, listing: Listing | None, indexed_at: str, context: Any = None
) -> PendingWrite:
    """The versioned write for `event`: its listing, or a tombstone for a delete (or a thin
    event whose listing the source no longer has)."""
    document = None if event.action == "delete" or listing is None else listing.to_document()
    return versioned_write(
        event.listing_id, event.version, event.event_id, document, indexed_at, context
    )


def versioned_write(
    listing_id: int,
    version: int,
    event_id: UUID,
    document: dict[str, Any] | None,
    indexed_at: str,
    context: Any = None,
) -> PendingWrite:
    """`document` with the service metadata, or a versioned tombstone when it is None."""
    if document is None:
        document = tombstone_document(listing_id, version, str(event_id), indexed_at)
    else:
        document["version"] = version
        document["indexed_at"] = indexed_at
        # the UUID itself: orjson writes it in the same canonical form `str()` gives, at a
        # fraction of the cost (`UUID.__str__` was ~1 µs per document on the hot path)
        document["event_id"] = event_id
    return PendingWrite(listing_id, version, document, context)


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


def is_thin(event: EventDict) -> bool:
    """`ListingEvent.is_thin` of the dict form."""
    return event["action"] == "index" and event.get("data") is None


def pending_writes_of_dicts(
    events: Iterable[tuple[EventDict, C]],
    hydrated: Mapping[int, Hydrated],
    indexed_at: str,
) -> tuple[list[PendingWrite], list[tuple[C, SchemaInvalidError]]]:
    """`pending_writes` for events in their dict form (`event_dict.decode_event_dict`, the
    worker's hot path): the same writes for the same events. An event's `data` dict becomes
    its document (the metadata is added to it): read nothing of the listing afterwards."""
    writes: list[PendingWrite] = []
    invalid: list[tuple[C, SchemaInvalidError]] = []
    for event, context in events:
        document: dict[str, Any] | None = None
        if event["action"] != "delete":
            data = event.get("data")  # absent from the sparse form when the event has none
            if data is not None:
                document = listing_document(data, reuse=True)
            else:
                found = hydrated.get(event["listing_id"])
                if isinstance(found, SchemaInvalidError):
                    invalid.append((context, found))
                    continue
                document = None if found is None else found.to_document()
        writes.append(
            versioned_write(
                event["listing_id"],
                event["version"],
                event["event_id"],
                document,
                indexed_at,
                context,
            )
        )
    return writes, invalid


def is_tombstone(write: PendingWrite) -> bool:
    return bool(write.document.get("deleted"))
