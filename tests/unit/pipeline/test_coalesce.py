"""Coalescing: one write per listing per batch, the newest version, later offset on a tie."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from stream_indexer.pipeline.coalesce import coalesce


@dataclass(frozen=True)
class Item:
    listing_id: int
    version: int
    offset: int


def items(*pairs: tuple[int, int]) -> list[Item]:
    """Items in offset order from (listing_id, version) pairs."""
    return [Item(listing_id, version, offset) for offset, (listing_id, version) in enumerate(pairs)]


def test_the_newest_version_wins_per_listing() -> None:
    batch = items((1, 5), (2, 1), (1, 7), (1, 6), (2, 3))
    winners, superseded = coalesce(batch)
    assert {(w.listing_id, w.version) for w in winners} == {(1, 7), (2, 3)}
    assert sorted(superseded, key=lambda i: i.offset) == [batch[0], batch[1], batch[3]]


def test_an_older_version_after_a_newer_one_is_superseded() -> None:
    batch = items((1, 9), (1, 2))
    winners, superseded = coalesce(batch)
    assert winners == [batch[0]]
    assert superseded == [batch[1]]


def test_equal_versions_the_later_offset_wins() -> None:
    batch = items((1, 4), (1, 4))
    winners, superseded = coalesce(batch)
    assert winners == [batch[1]]
    assert superseded == [batch[0]]


def test_winners_keep_first_seen_order() -> None:
    batch = items((3, 1), (1, 1), (2, 1), (3, 2))
    winners, _ = coalesce(batch)
    assert [w.listing_id for w in winners] == [3, 1, 2]


def test_an_empty_batch_gives_nothing() -> None:
    assert coalesce([]) == ([], [])


def test_a_batch_without_repeats_is_unchanged() -> None:
    batch = items((1, 1), (2, 1), (3, 1))
    assert coalesce(batch) == (batch, [])


@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=5), st.integers(min_value=0, max_value=6)),
        max_size=40,
    )
)
def test_one_winner_per_listing_with_the_max_version(pairs: list[tuple[int, int]]) -> None:
    batch = items(*pairs)
    winners, superseded = coalesce(batch)

    # exactly one winner per listing
    assert sorted(w.listing_id for w in winners) == sorted({i.listing_id for i in batch})
    for winner in winners:
        same = [i for i in batch if i.listing_id == winner.listing_id]
        newest = max(i.version for i in same)
        assert winner.version == newest
        # on a tie the last of the newest wins
        assert winner.offset == max(i.offset for i in same if i.version == newest)

    # nothing lost, nothing doubled: winners and superseded partition the batch
    assert sorted(i.offset for i in [*winners, *superseded]) == list(range(len(batch)))
