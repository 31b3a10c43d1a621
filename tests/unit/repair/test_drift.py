"""The drift comparison of one row and one document: every kind, and what is not drift."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from stream_indexer.devtools.synthetic import listing_data
from stream_indexer.errors import SchemaInvalidError
from stream_indexer.models import Listing
from stream_indexer.pipeline.source_scan import SourceRow
from stream_indexer.repair.drift import DRIFT_KINDS, Finding, IndexDoc, compare

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _data(**changes: Any) -> dict[str, Any]:
    data = listing_data(random.Random(7), 7, AT)
    data.update(changes)
    return data


def row(version: int | None = 5, **changes: Any) -> SourceRow:
    listing = Listing.model_validate(_data(**changes))
    return SourceRow(7, version, listing, "{}")


def doc(version: int = 5, *, deleted: bool = False, **changes: Any) -> IndexDoc:
    if deleted:
        return IndexDoc(7, version, {"id": 7, "version": version, "deleted": True})
    source = orjson.loads(orjson.dumps(Listing.model_validate(_data(**changes)).to_document()))
    source.update({"version": version, "indexed_at": "2026-01-01T00:00:00Z", "event_id": "e"})
    return IndexDoc(7, version, source)


@pytest.mark.parametrize(
    ("source", "index", "finding"),
    [
        (row(), doc(), Finding.OK),
        (None, None, Finding.OK),
        (None, doc(4, deleted=True), Finding.OK),
        (row(), None, Finding.MISSING),
        (row(5), doc(3, deleted=True), Finding.MISSING),
        (None, doc(4), Finding.EXTRA),
        (row(6), doc(4), Finding.VERSION_BEHIND),
        (row(5, title="new"), doc(5, title="old"), Finding.FIELDS_DIFFERENT),
        (row(5), doc(9), Finding.AHEAD),
        (row(5), doc(5, deleted=True), Finding.AHEAD),
        (row(5), doc(8, deleted=True), Finding.AHEAD),
        (row(None), doc(), Finding.INVALID_SOURCE_ROW),
    ],
)
def test_each_pair_gives_its_finding(
    source: SourceRow | None, index: IndexDoc | None, finding: Finding
) -> None:
    assert compare(source, index) is finding


def test_an_invalid_row_is_reported_not_compared() -> None:
    invalid = SourceRow(7, 5, SchemaInvalidError("title: too short"), "{}")
    assert compare(invalid, None) is Finding.INVALID_SOURCE_ROW
    assert Finding.INVALID_SOURCE_ROW not in DRIFT_KINDS
    assert Finding.AHEAD not in DRIFT_KINDS


def test_per_write_metadata_and_value_spellings_are_not_differences() -> None:
    stored = doc(5)
    stored.source["indexed_at"] = "2030-01-01T00:00:00Z"
    stored.source["event_id"] = "another"
    stored.source["updated_at"] = stored.source["updated_at"].replace("+00:00", "Z")
    stored.source["price"] = float(stored.source["price"])
    assert compare(row(5), stored) is Finding.OK


def test_a_corrupted_or_unknown_field_is_a_difference() -> None:
    unknown = doc(5)
    unknown.source["surprise"] = 1
    assert compare(row(5), unknown) is Finding.FIELDS_DIFFERENT
    broken = doc(5)
    broken.source["title"] = ""
    assert compare(row(5), broken) is Finding.FIELDS_DIFFERENT
    lost = doc(5)
    del lost.source["title"]
    assert compare(row(5), lost) is Finding.FIELDS_DIFFERENT
