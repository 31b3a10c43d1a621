"""The index reader's merge of several physical indices (an alias mid-cutover)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from stream_indexer.repair.drift import IndexDoc
from stream_indexer.repair.index_scan import _merge_by_id


async def _stream(*docs: tuple[int, int]) -> AsyncIterator[IndexDoc]:
    for listing_id, version in docs:
        yield IndexDoc(listing_id, version, {"version": version})


async def test_merged_streams_stay_in_id_order_with_each_listing_at_its_newest() -> None:
    merged = _merge_by_id(
        [_stream((1, 5), (3, 2), (4, 9)), _stream((2, 1), (3, 7), (4, 3), (8, 1)), _stream()]
    )
    got = [(doc.listing_id, doc.version) async for doc in merged]
    assert got == [(1, 5), (2, 1), (3, 7), (4, 9), (8, 1)]
