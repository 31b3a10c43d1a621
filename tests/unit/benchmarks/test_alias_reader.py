"""The cutover figure the reindex bench step prints, from a reader's recorded searches."""

from __future__ import annotations

from bench.alias_reader import Search, cutover_pause, percentile


def _searches(start: float, count: int, index: str, took: float = 0.01) -> list[Search]:
    return [Search(start + i * 0.1, took, index, False) for i in range(count)]


def test_percentile_is_nearest_rank_on_exact_samples() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) is None


def test_the_switch_is_where_the_answering_index_changes() -> None:
    before = _searches(0.0, 50, "a_v1")
    # 3 s on the old index, then the new one; one slow search just after the switch
    during = _searches(100.0, 30, "a_v1") + _searches(103.0, 30, "a_v2")
    during[31] = Search(103.1, 0.5, "a_v2", False)
    out = cutover_pause(before, during, "a_v2", around_s=1.0)
    assert out["switched"] and out["errors"] == 0
    assert out["before_reindex"]["searches"] == 50
    assert out["during_reindex"]["searches"] == 30  # up to the first answer from a_v2
    around = out["around_switch"]
    assert around["max_ms"] == 500.0
    # the switch sits half way between 102.9 and 103.0: 10 searches each side within 1 s
    assert around["searches"] == 20
    assert out["longest_gap_ms"] > 500.0


def test_errors_are_counted_and_a_missing_switch_is_said() -> None:
    during = [*_searches(0.0, 10, "a_v1"), Search(1.0, 0.2, None, True)]
    out = cutover_pause([], during, "a_v2")
    assert out["errors"] == 1
    assert out["switched"] is False
    assert "around_switch" not in out
    assert out["during_reindex"]["errors"] == 1


def test_a_slow_search_across_the_switch_is_counted_around_it() -> None:
    during = [Search(0.0, 0.01, "a_v1", False), Search(0.1, 3.0, "a_v1", False)]
    during += [Search(3.2, 0.01, "a_v2", False)]
    out = cutover_pause([], during, "a_v2", around_s=1.0)
    assert out["around_switch"]["max_ms"] == 3000.0
    assert out["around_switch"]["searches"] == 2
