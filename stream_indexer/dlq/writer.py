"""Dead letters, the checkpoint's entry point: write a batch to the Postgres table and the DLQ
topic concurrently, and succeed only when both have it (nothing is committed before that).

When either store fails the whole batch is reported failed and the caller retries it against
both stores: the table upsert ignores records it already counts, and the topic is a log where
a duplicate is acceptable. Waiting for both before raising means a failure of one store never
abandons a write still in flight to the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.table import PostgresDeadLetterTable
from stream_indexer.dlq.topic import KafkaDeadLetterTopic
from stream_indexer.errors import DeadLetterStoreError


class DeadLetterWriter:
    """Both DLQ stores behind one `write`; a store passed as None is not required."""

    def __init__(
        self, table: PostgresDeadLetterTable | None, topic: KafkaDeadLetterTopic | None
    ) -> None:
        if table is None and topic is None:
            raise ValueError("DeadLetterWriter needs at least one store, or letters are lost")
        self.table = table
        self.topic = topic

    @property
    def stores(self) -> tuple[str, ...]:
        """Names of the configured stores (`postgres`, `kafka`), e.g. for metric labels."""
        names = []
        if self.table is not None:
            names.append(self.table.store_name)
        if self.topic is not None:
            names.append(self.topic.store_name)
        return tuple(names)

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        """Write `letters` to every store; DeadLetterStoreError naming each store that failed."""
        if not letters:
            return
        writes: list[Awaitable[None]] = []
        if self.table is not None:
            writes.append(self.table.write(letters))
        if self.topic is not None:
            writes.append(self.topic.publish(letters))
        results = await asyncio.gather(*writes, return_exceptions=True)
        failures: list[DeadLetterStoreError] = []
        for result in results:
            if isinstance(result, DeadLetterStoreError):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result  # a bug, not an unavailable store: let it surface as itself
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise DeadLetterStoreError("; ".join(str(f) for f in failures)) from failures[0]


__all__ = ["DeadLetterWriter"]
