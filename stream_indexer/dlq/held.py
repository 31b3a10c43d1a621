"""Dead letters, health side: which partitions are holding letters a DLQ store has not taken.

A partition whose dead letters cannot be stored holds its offset (docs/contract.md: dead letters
lose nothing). That is an outage of a dependency, so `/readyz` reports it with the reason and
`stream_indexer_dlq_held_letters` counts the letters waiting; restarting the pod would not
help, so liveness leaves it alone (docs/runbook.md, "Dead-letter store down").
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Gauge


@dataclass(frozen=True, slots=True)
class _Hold:
    letters: int
    stores: tuple[str, ...]
    reason: str


class HeldLetters:
    """Per partition (any hashable key): letters held and why; feeds the gauge."""

    def __init__(self, gauge: Gauge | None = None) -> None:
        self._gauge = gauge
        self._holds: dict[object, _Hold] = {}

    def hold(self, key: object, letters: int, stores: tuple[str, ...], reason: str) -> None:
        """`key` now holds `letters` letters that `stores` did not take (`reason`)."""
        self._holds[key] = _Hold(letters, stores, reason)
        self._update()

    def release(self, key: object) -> None:
        """`key`'s letters are stored (or its worker stopped): nothing held any more."""
        if self._holds.pop(key, None) is not None:
            self._update()

    @property
    def letters(self) -> int:
        return sum(hold.letters for hold in self._holds.values())

    def summary(self) -> str | None:
        """One line for `/readyz`, or None when nothing is held."""
        if not self._holds:
            return None
        stores = sorted({store for hold in self._holds.values() for store in hold.stores})
        reason = next(iter(self._holds.values())).reason
        return (
            f"dead-letter store {', '.join(stores) or 'unknown'} unavailable: "
            f"{self.letters} letters held in {len(self._holds)} partitions ({reason})"
        )

    def _update(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self.letters)


__all__ = ["HeldLetters"]
