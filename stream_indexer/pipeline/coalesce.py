"""Coalescing: within one batch, keep only the newest event per listing.

Several changes to one listing in a batch need only one write: the highest `version`
wins (ties go to the later offset, i.e. the re-sent duplicate). The losers are finished
as stale without a request; OpenSearch's external_gte versioning would reject them anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class Versioned(Protocol):
    @property
    def listing_id(self) -> int: ...

    @property
    def version(self) -> int: ...


T = TypeVar("T", bound=Versioned)


def coalesce(items: Iterable[T]) -> tuple[list[T], list[T]]:
    """Split `items` (in offset order) into (winners, superseded); winners keep first-seen order."""
    newest: dict[int, T] = {}
    superseded: list[T] = []
    for item in items:
        current = newest.get(item.listing_id)
        if current is None:
            newest[item.listing_id] = item
        elif item.version >= current.version:
            superseded.append(current)
            newest[item.listing_id] = item
        else:
            superseded.append(item)
    return list(newest.values()), superseded
