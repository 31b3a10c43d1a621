"""Drift check, the result: counts per kind with example ids, as JSON, text and metrics.

Memory stays bounded however much drifts: a report keeps counts and the first few ids of
each kind, never every id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stream_indexer.observability.metrics import Metrics
from stream_indexer.repair.drift import DRIFT_KINDS, Finding

#: example ids kept per kind
EXAMPLES = 10
#: repair results
REPAIRED, NEWER_MEANWHILE, FAILED = "repaired", "newer_meanwhile", "failed"
Mode = Literal["sample", "full"]


@dataclass(slots=True)
class Tally:
    """How many listings had one finding, and the first few of them."""

    count: int = 0
    examples: list[int] = field(default_factory=list)

    def add(self, listing_id: int) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(listing_id)


@dataclass(slots=True)
class VerifyReport:
    mode: Mode
    #: source rows and index documents asked for by the mode (sample size, or None: all)
    sample: int | None
    repair: bool
    checked_rows: int = 0
    checked_docs: int = 0
    #: confirmed findings (drift kinds, `ahead`, `invalid_source_row`)
    findings: dict[Finding, Tally] = field(default_factory=dict)
    #: candidates that were no longer drift when looked up again (events in flight)
    settled: int = 0
    #: repair results: repaired, newer_meanwhile, failed
    repairs: dict[str, Tally] = field(default_factory=dict)
    #: repaired listings that still drift when looked up after the repair
    still_drifting: Tally = field(default_factory=Tally)
    duration_s: float = 0.0
    finished_at: float = 0.0

    def found(self, finding: Finding, listing_id: int) -> None:
        self.findings.setdefault(finding, Tally()).add(listing_id)

    def repaired(self, result: str, listing_id: int) -> None:
        self.repairs.setdefault(result, Tally()).add(listing_id)

    def count(self, finding: Finding) -> int:
        tally = self.findings.get(finding)
        return tally.count if tally else 0

    def repair_count(self, result: str) -> int:
        tally = self.repairs.get(result)
        return tally.count if tally else 0

    @property
    def drift(self) -> int:
        return sum(self.count(kind) for kind in DRIFT_KINDS)

    @property
    def remaining(self) -> int:
        """Drift left when the run ended: all of it without `--repair`; with it, what a
        repair could not fix (failed writes, listings still different after the repair)."""
        if not self.repair:
            return self.drift
        return self.repair_count(FAILED) + self.still_drifting.count

    @property
    def exit_code(self) -> int:
        return 1 if self.remaining else 0

    def to_json(self) -> dict[str, Any]:
        def tally(t: Tally | None) -> dict[str, Any]:
            return {"count": t.count if t else 0, "examples": list(t.examples) if t else []}

        data: dict[str, Any] = {
            "mode": self.mode,
            "sample": self.sample,
            "checked": {"source_rows": self.checked_rows, "index_documents": self.checked_docs},
            "drift": {kind.value: tally(self.findings.get(kind)) for kind in DRIFT_KINDS},
            "drift_total": self.drift,
            "ahead": tally(self.findings.get(Finding.AHEAD)),
            "invalid_source_row": tally(self.findings.get(Finding.INVALID_SOURCE_ROW)),
            "settled": self.settled,
            "repair": None,
            "remaining": self.remaining,
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
        }
        if self.repair:
            data["repair"] = {
                REPAIRED: tally(self.repairs.get(REPAIRED)),
                NEWER_MEANWHILE: tally(self.repairs.get(NEWER_MEANWHILE)),
                FAILED: tally(self.repairs.get(FAILED)),
                "still_drifting": tally(self.still_drifting),
            }
        return data

    def lines(self) -> list[str]:
        """The human summary."""
        scope = "full scan" if self.mode == "full" else f"sample of {self.sample}"
        out = [
            f"verify ({scope}): checked {self.checked_rows} source rows and "
            f"{self.checked_docs} index documents in {self.duration_s:.1f}s"
        ]
        for kind in DRIFT_KINDS:
            out.append(_tally_line(kind.value, self.findings.get(kind)))
        out.append(f"drift: {self.drift}")
        out.append(_tally_line("ahead of the source (not drift)", self.findings.get(Finding.AHEAD)))
        out.append(
            _tally_line(
                "invalid source rows (not repaired)", self.findings.get(Finding.INVALID_SOURCE_ROW)
            )
        )
        if self.settled:
            out.append(f"settled while checked (events in flight, not drift): {self.settled}")
        if self.repair:
            out.append(_tally_line("repaired", self.repairs.get(REPAIRED)))
            out.append(
                _tally_line(
                    "newer version written meanwhile (kept)", self.repairs.get(NEWER_MEANWHILE)
                )
            )
            out.append(_tally_line("repair failed", self.repairs.get(FAILED)))
            out.append(_tally_line("still drifting after repair", self.still_drifting))
        verdict = "no drift" if not self.drift else f"{self.remaining} drifted listings remain"
        if self.drift and not self.remaining:
            verdict = "all drift repaired"
        out.append(verdict)
        return out

    def export(self, metrics: Metrics) -> None:
        """Set the verify gauges to this run's figures."""
        for kind in DRIFT_KINDS:
            metrics.drift_documents.labels(kind.value).set(self.count(kind))
        metrics.drift_remaining.set(self.remaining)
        metrics.drift_ahead.set(self.count(Finding.AHEAD))
        metrics.drift_invalid_source_rows.set(self.count(Finding.INVALID_SOURCE_ROW))
        metrics.drift_checked.labels("source").set(self.checked_rows)
        metrics.drift_checked.labels("index").set(self.checked_docs)
        for result in (REPAIRED, NEWER_MEANWHILE, FAILED):
            metrics.drift_repaired.labels(result).set(self.repair_count(result))
        metrics.verify_duration.set(self.duration_s)
        metrics.verify_last_run.set(self.finished_at)


def _tally_line(label: str, tally: Tally | None) -> str:
    if tally is None or not tally.count:
        return f"  {label}: 0"
    more = ", ..." if tally.count > len(tally.examples) else ""
    return f"  {label}: {tally.count} (e.g. {', '.join(map(str, tally.examples))}{more})"


__all__ = ["EXAMPLES", "FAILED", "NEWER_MEANWHILE", "REPAIRED", "Tally", "VerifyReport"]
