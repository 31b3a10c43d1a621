"""The cost grid's document shapes and the shaping plot's series (bench/ helpers)."""

from __future__ import annotations

from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from bench.cost_grid import coalesce, partition_of, partition_order, without_metadata
from bench.plot import series, write_svg
from stream_indexer.opensearch.bulk import PendingWrite


def test_partition_order_is_the_producers_partitioning_in_offset_order() -> None:
    keys = [str(i).encode() for i in range(1, 200)]
    partitioner = DefaultPartitioner()
    for key in keys:
        assert partition_of(key, 6) == partitioner(key, list(range(6)), list(range(6)))
    ordered = partition_order([(k, b"v") for k in keys], 6)
    parts = [partition_of(k, 6) for k, _ in ordered]
    assert parts == sorted(parts)
    assert sorted(k for k, _ in ordered) == sorted(keys)
    first = [k for k, _ in ordered if partition_of(k, 6) == parts[0]]
    assert first == [k for k in keys if partition_of(k, 6) == parts[0]]  # offset order kept


def test_coalescing_keeps_the_newest_write_per_listing_within_each_window() -> None:
    writes = [PendingWrite(i % 3, v, {"v": v}) for v, i in enumerate([1, 2, 1, 3, 1, 2])]
    kept = coalesce(writes, window=4)
    assert [(w.listing_id, w.version) for w in kept] == [(1, 2), (2, 1), (0, 3), (1, 4), (2, 5)]


def test_without_metadata_drops_the_service_fields_but_keeps_tombstones() -> None:
    document = {"id": 1, "version": 5, "indexed_at": "t", "event_id": "e", "deleted": True}
    (write,) = without_metadata([PendingWrite(1, 5, document)])
    assert write.document == {"id": 1, "deleted": True}
    assert write.version == 5


def test_the_plot_series_and_svg(tmp_path: Path) -> None:
    timeline = [
        {"t": 0.0, "committed": 0, "documents": 0, "requests": 0, "limit": 1, "in_flight": 1},
        {"t": 1.0, "committed": 500, "documents": 300, "requests": 2, "limit": 2, "in_flight": 2},
        {"t": 2.0, "committed": 500, "documents": 300, "requests": 2, "limit": 3, "in_flight": 0},
    ]
    assert series(timeline, "rate") == [(1.0, 500.0), (2.0, 0.0)]
    assert series(timeline, "bulk") == [(1.0, 150.0)]  # no request answered in the second
    assert series(timeline, "limit") == [(1.0, 2), (2.0, 3)]
    path = tmp_path / "shaping.svg"
    write_svg(path, {"w": {"fixed": {"timeline": timeline}, "adaptive": {"timeline": timeline}}})
    text = path.read_text()
    assert text.startswith("<svg") and text.count("<polyline") == 8
