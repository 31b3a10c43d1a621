"""The freshness quantiles the reindex bench step prints, from two scrapes of the histogram."""

from __future__ import annotations

import pytest

from bench.reindex_freshness import live_rate, parse_histogram, quantile, timeline

SCRAPE = """\
# HELP stream_indexer_freshness_seconds seconds from occurred_at to acknowledged write
# TYPE stream_indexer_freshness_seconds histogram
stream_indexer_freshness_seconds_bucket{le="0.5"} 10.0
stream_indexer_freshness_seconds_bucket{le="1.0"} 50.0
stream_indexer_freshness_seconds_bucket{le="+Inf"} 60.0
stream_indexer_freshness_seconds_count 60.0
stream_indexer_freshness_seconds_sum 70.0
"""


def test_buckets_are_read_by_bound() -> None:
    assert parse_histogram(SCRAPE) == {0.5: 10.0, 1.0: 50.0, float("inf"): 60.0}


def test_quantile_counts_only_what_happened_between_the_scrapes() -> None:
    before = {0.5: 10.0, 1.0: 10.0, float("inf"): 10.0}  # all fast, before the window
    after = {0.5: 10.0, 1.0: 110.0, float("inf"): 110.0}  # the window: 100 in (0.5, 1]
    assert quantile(0.5, before, after) == pytest.approx(0.75)
    assert quantile(0.99, before, after) == pytest.approx(0.995)


def test_quantile_interpolates_inside_a_bucket_and_caps_at_the_last_bound() -> None:
    after = parse_histogram(SCRAPE)
    assert quantile(0.1, {}, after) == pytest.approx(0.3)  # 6th of 10 in [0, 0.5]
    assert quantile(0.99, {}, after) == 1.0  # in +Inf: the largest finite bound
    assert quantile(0.5, after, after) is None  # nothing observed


def test_timeline_gives_each_interval_its_own_p99() -> None:
    first = {0.5: 10.0, 1.0: 10.0, float("inf"): 10.0}
    second = {0.5: 20.0, 1.0: 20.0, float("inf"): 20.0}  # 10 fast ones
    third = {0.5: 20.0, 1.0: 30.0, float("inf"): 30.0}  # 10 slower ones
    out = timeline(100.0, [(100.0, first), (101.0, second), (102.0, third)])
    assert [point["t_s"] for point in out] == [1.0, 2.0]
    assert [point["acked"] for point in out] == [10, 10]
    assert out[0]["p99_s"] < 0.5 < out[1]["p99_s"]


def test_the_live_rate_is_a_quarter_of_the_ceiling_within_bounds() -> None:
    assert live_rate(1_200.0) == 300.0
    assert live_rate(10_000.0) == 500.0
    assert live_rate(100.0) == 50.0
