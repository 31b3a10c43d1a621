"""Drift check, the comparison: one source row against the one document the index holds.

Pure: no I/O. The source table is the truth; the document the pipeline would build from a
row (`Listing.to_document()` plus the row's version) is what the index should hold, and
anything else is drift of one kind:

- `missing`: the row exists, the index has no live document for it (none at all, or a
  tombstone older than the row: a listing re-created after its delete);
- `extra`: a live document whose row is gone (a delete that never reached the index);
- `version_behind`: the document is older than the row (an update that never arrived);
- `fields_different`: same version, different listing fields (a write that was lost or
  corrupted; `indexed_at` and `event_id` are per write and never compared).

Two findings are not drift and are counted apart: a document *ahead* of its row (an event
indexed before the scan read the row, or a source that lags its events), and a source row
that breaks the listing contract (`invalid_source_row`: the pipeline would dead-letter it,
so nothing can be repaired from it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from stream_indexer.models import Listing
from stream_indexer.opensearch.mapping import METADATA_FIELDS
from stream_indexer.pipeline.source_scan import SourceRow


class Finding(enum.StrEnum):
    """What comparing one listing's row and document found."""

    OK = "ok"
    MISSING = "missing"
    EXTRA = "extra"
    VERSION_BEHIND = "version_behind"
    FIELDS_DIFFERENT = "fields_different"
    #: not drift: the document is newer than the row
    AHEAD = "ahead"
    #: not drift: the row breaks the contract; reported, never repaired
    INVALID_SOURCE_ROW = "invalid_source_row"


#: the findings that are drift (exit 1, repaired by `--repair`), in report order
DRIFT_KINDS: tuple[Finding, ...] = (
    Finding.MISSING,
    Finding.EXTRA,
    Finding.VERSION_BEHIND,
    Finding.FIELDS_DIFFERENT,
)


@dataclass(frozen=True, slots=True)
class IndexDoc:
    """One document as the index holds it: `_id`, external `_version`, `_source`."""

    listing_id: int
    version: int
    source: dict[str, Any]

    @property
    def deleted(self) -> bool:
        return bool(self.source.get("deleted"))


def compare(row: SourceRow | None, doc: IndexDoc | None) -> Finding:
    """The finding for one listing id, given its source row and its document (either absent)."""
    if row is None:
        return Finding.EXTRA if doc is not None and not doc.deleted else Finding.OK
    if row.version is None or not isinstance(row.listing, Listing):
        return Finding.INVALID_SOURCE_ROW
    if doc is None:
        return Finding.MISSING
    if doc.deleted:
        # a tombstone at the row's version or above: the delete is the newer news
        return Finding.MISSING if doc.version < row.version else Finding.AHEAD
    if doc.version < row.version:
        return Finding.VERSION_BEHIND
    if doc.version > row.version:
        return Finding.AHEAD
    if listing_fields(doc.source) != expected_fields(row.listing):
        return Finding.FIELDS_DIFFERENT
    return Finding.OK


def expected_fields(listing: Listing) -> dict[str, Any]:
    """The listing fields the pipeline writes for `listing`, as JSON reads them back."""
    return _json(listing.to_document())


def listing_fields(source: dict[str, Any]) -> dict[str, Any] | None:
    """A stored document's listing fields read back through the model, so that spellings
    of one value (`...Z` or `...+00:00`, `10` or `10.0`) compare equal; None when they no
    longer make a listing (a corrupted document is always different)."""
    fields = {key: value for key, value in source.items() if key not in METADATA_FIELDS}
    try:
        listing = Listing.model_validate(fields)
    except ValidationError:
        return None
    document = _json(listing.to_document())
    # a field the model drops (unknown to it) still makes the stored document different
    return document if set(fields) <= set(document) else None


def _json(document: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(orjson.dumps(document))
    return result


__all__ = ["DRIFT_KINDS", "Finding", "IndexDoc", "compare", "expected_fields", "listing_fields"]
