"""Dead letters, the checkpoint's entry point: write a batch to the Postgres table and the DLQ
topic concurrently, and succeed only when both have it (nothing is committed before that).

When either store fails the whole batch is reported failed and the caller retries it against
both stores: the table upsert ignores records it already counts, and the topic is a log where
a duplicate is acceptable. Waiting for both before raising means a failure of one store never
abandons a write still in flight to the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass

from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.table import PostgresDeadLetterTable
from stream_indexer.dlq.topic import KafkaDeadLetterTopic
from stream_indexer.errors import DeadLetterStoreError

log = logging.getLogger(__name__)


class DeadLetterWriter:
    """Both DLQ stores behind one `write`; a store passed as None is not written at all.

    Stores named in `optional` are written best effort: their failure is logged and reported
    in `WriteResult.failed_optional`, but does not hold the offset. By default both stores
    are required (DESIGN.md: dead letters lose nothing).
    """

    def __init__(
        self,
        table: PostgresDeadLetterTable | None,
        topic: KafkaDeadLetterTopic | None,
        *,
        optional: Collection[str] = (),
    ) -> None:
        if table is None and topic is None:
            raise ValueError("DeadLetterWriter needs at least one store, or letters are lost")
        self.table = table
        self.topic = topic
        self.optional = frozenset(optional)
        if self.optional >= set(self.stores):
            raise ValueError("at least one dead-letter store must be required")

    @property
    def stores(self) -> tuple[str, ...]:
        """Names of the configured stores (`postgres`, `kafka`), e.g. for metric labels."""
        names = []
        if self.table is not None:
            names.append(self.table.store_name)
        if self.topic is not None:
            names.append(self.topic.store_name)
        return tuple(names)

    async def write(
        self, letters: Sequence[DeadLetter], *, only: Collection[str] | None = None
    ) -> WriteResult:
        """Write `letters` to every store (or to the stores in `only`, for a retry).

        Raises DeadLetterStoreError (with `.stores`) naming each required store that failed;
        a retry passes those as `only`, so a store that already has the letters (the DLQ
        topic, a log) does not get them twice.
        """
        if not letters:
            return WriteResult((), ())
        names: list[str] = []
        writes: list[Awaitable[None]] = []
        if self.table is not None and (only is None or self.table.store_name in only):
            names.append(self.table.store_name)
            writes.append(self.table.write(letters))
        if self.topic is not None and (only is None or self.topic.store_name in only):
            names.append(self.topic.store_name)
            writes.append(self.topic.publish(letters))
        results = await asyncio.gather(*writes, return_exceptions=True)
        written: list[str] = []
        failed_optional: list[str] = []
        failures: list[tuple[str, DeadLetterStoreError]] = []
        for name, result in zip(names, results, strict=True):
            if result is None:
                written.append(name)
            elif isinstance(result, DeadLetterStoreError):
                if name in self.optional:
                    log.warning("optional dead-letter store %s failed: %s", name, result)
                    failed_optional.append(name)
                else:
                    failures.append((name, result))
            else:
                raise result  # a bug, not an unavailable store: let it surface as itself
        if failures:
            raise DeadLetterStoreError(
                "; ".join(str(error) for _name, error in failures),
                stores=tuple(name for name, _error in failures),
            ) from failures[0][1]
        return WriteResult(tuple(written), tuple(failed_optional))


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Which stores now hold the letters, and which optional ones failed."""

    written: tuple[str, ...]
    failed_optional: tuple[str, ...]


__all__ = ["DeadLetterWriter", "WriteResult"]
