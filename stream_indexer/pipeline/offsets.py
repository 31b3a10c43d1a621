"""Commit watermark: which offset of one partition may be committed right now.

Batches of one partition may finish out of order (several in flight, retries), but a
commit says "everything below this offset is done". As faust's `_new_offset` does, the
tracker commits up to the first gap: the end of the last batch in an unbroken run of
finished batches, never past a record still in flight. It counts delivered records,
not integer offsets, so gaps in the log (transaction markers, compaction) never stall it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Span:
    first_offset: int
    last_offset: int
    fetched_at: float
    done: bool = False


class OffsetTracker:
    """Per-partition record of spans (batches) in flight and the committable offset."""

    __slots__ = ("_next_token", "_spans", "committable")

    def __init__(self, committable: int | None = None) -> None:
        #: offset a commit would send now (Kafka semantics: the next record to read);
        #: None until the first span finishes, when nothing new is committable
        self.committable = committable
        self._spans: OrderedDict[int, _Span] = OrderedDict()
        self._next_token = 0

    def begin(self, first_offset: int, last_offset: int, fetched_at: float) -> int:
        """Register records `first..last` (in fetch order) as in flight; return a token."""
        if last_offset < first_offset:
            raise ValueError("a span ends before it starts")
        token = self._next_token
        self._next_token += 1
        self._spans[token] = _Span(first_offset, last_offset, fetched_at)
        return token

    def complete(self, token: int) -> int | None:
        """Mark a span finished (indexed or dead-lettered); return the committable offset."""
        span = self._spans.get(token)
        if span is None:
            raise KeyError(f"unknown or already completed span {token}")
        span.done = True
        while self._spans:
            first_token, first = next(iter(self._spans.items()))
            if not first.done:
                break
            del self._spans[first_token]
            self.committable = first.last_offset + 1
        return self.committable

    def oldest_pending_since(self) -> float | None:
        """Fetch time of the oldest record not yet committable (None when all are done)."""
        for span in self._spans.values():
            return span.fetched_at
        return None

    @property
    def spans_in_flight(self) -> int:
        return len(self._spans)
