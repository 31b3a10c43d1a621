"""The benchmark's comparison table: every system that ran, and why the others did not."""

from __future__ import annotations

from bench.report import _comparison_lines, comparison, render

RUN = {
    "events_per_s": 1000.0,
    "documents_sent": 900,
    "bulk_requests": 3,
    "cpu_window_us_per_event": 20.0,
    "cpu_us_per_event": 30.0,
    "max_rss_mib": 100.0,
}


def test_rows_for_what_ran_and_reasons_for_what_did_not() -> None:
    results = {
        "bulk_ceiling": {"documents": 990, "events_per_s": 7.0, "best": {"batch_size": 5000}},
        "end_to_end": RUN,
        "index_check": {"ok": True, "exact": {"ok": True}},
        "zero_cost": {"indexer": RUN, "baseline": RUN, "validating_baseline": RUN},
        "external": {
            "node": {
                "osmem": {**RUN, "index_check": {"ok": True, "extra": 4}},
                "zero_cost": RUN,
            },
            "quix": {"osmem": {"error": "HTTP 406"}, "zero_cost": {**RUN, "events_per_s": 5.0}},
        },
    }
    rows = comparison(results)
    assert [(row["system"][:8], row["sink"]) for row in rows] == [
        ("bulk cei", "osmem"),
        ("stream-i", "osmem"),
        ("Node kaf", "osmem"),
        ("Quix Str", "osmem"),
        ("stream-i", "zero-cost"),
        ("per-part", "zero-cost"),
        ("per-part", "zero-cost"),
        ("Node kaf", "zero-cost"),
        ("Quix Str", "zero-cost"),
    ]
    assert rows[0]["events_per_s"] == 7.0
    assert rows[3]["not_run"] == "HTTP 406"
    assert rows[6]["system"] == "per-partition baseline + validation"
    assert rows[8]["events_per_s"] == 5.0
    text = "\n".join(_comparison_lines(rows))
    assert "not run: HTTP 406" in text
    assert "exact +4 poison" in text


def test_a_skipped_system_is_named_once_with_its_reason() -> None:
    results = {"external": {"node": {"skipped": "node or npm is not installed"}, "quix": {}}}
    rows = comparison(results)
    assert rows == [
        {
            "system": "Node kafkajs eachBatch consumer",
            "sink": "osmem",
            "not_run": "node or npm is not installed",
        }
    ]


def test_the_zero_cost_section_names_what_validation_alone_leaves_of_the_rate() -> None:
    zero_cost = {
        "records": 10,
        "pairs": 3,
        "indexer": RUN,
        "baseline": RUN,
        "validating_baseline": RUN,
        "rate_vs_baseline": 0.58,
        "cpu_window_vs_baseline": 1.59,
        "rate_vs_validating_baseline": 0.74,
        "cpu_window_vs_validating_baseline": 1.36,
        "validating_rate_vs_baseline": 0.78,
        "pooled_validating_baseline": {**RUN, "processes": 2},
        "pooled_validating_rate_vs_baseline": 0.95,
        "pooled_validating_cpu_vs_baseline": 1.62,
    }
    text = render(
        {
            "run_id": "x",
            "config": {"mode": "quick"},
            "results": {"zero_cost": zero_cost},
            "verdicts": [],
            "machine": {"cpus": 2, "cpu_model": "x", "memory_gib": 1, "python": "3.11"},
        }
    )
    assert "baseline validating the contract / baseline: 0.78x the rate" in text
    assert "+ in 2 procs" in text
    assert "pool of worker processes / baseline: 0.95x the rate, 1.62x the CPU" in text
