"""Outbox relay decisions that need no server: what to mark sent, how long to back off."""

from __future__ import annotations

import pytest

from stream_indexer.producer.relay import OutboxRow, rows_to_mark


def row(row_id: int, listing_id: int) -> OutboxRow:
    return OutboxRow(row_id, listing_id, "t", str(listing_id).encode(), b"{}")


def test_all_acknowledged_rows_are_marked() -> None:
    rows = [row(1, 5), row(2, 6), row(3, 5)]
    assert rows_to_mark(rows, [None, None, None]) == ([1, 2, 3], [])


def test_rows_after_a_listings_failure_stay_pending() -> None:
    rows = [row(1, 5), row(2, 6), row(3, 5), row(4, 6)]
    boom = RuntimeError("broker said no")
    sent, failed = rows_to_mark(rows, [boom, None, None, None])
    assert sent == [2, 4]  # row 3 was acknowledged but comes after listing 5's failure
    assert [row_id for row_id, _ in failed] == [1]
    assert "broker said no" in failed[0][1]


def test_outcomes_must_match_rows() -> None:
    with pytest.raises(ValueError):
        rows_to_mark([row(1, 1)], [])
