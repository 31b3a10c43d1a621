"""Dead letters, the checkpoint's entry point: write a batch to the Postgres table and the DLQ
topic concurrently, and succeed only when both have it (nothing is committed before that).

`deliver()` returns a `DeadLetterDelivery` that remembers, per store, which letters that
store has not acknowledged yet: a retry sends a store only those, so a letter reaches the
DLQ topic once per delivery of its source record (a duplicate only after a crash between
the two writes). Letters a store refuses for what they are never come back here as
failures: the stores degrade them until they fit (`degrade.py`). Waiting for both stores
before raising means a failure of one never abandons a write still in flight to the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
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
    are required (docs/contract.md: dead letters lose nothing).
    """

    def __init__(
        self,
        table: PostgresDeadLetterTable | None,
        topic: KafkaDeadLetterTopic | None,
        *,
        optional: Collection[str] = (),
        keep: Callable[[DeadLetter], bool] | None = None,
    ) -> None:
        """`keep`, when given, decides which letters are stored at all (a reindex's
        catch-up group stores only what the live group cannot have stored already)."""
        if table is None and topic is None:
            raise ValueError("DeadLetterWriter needs at least one store, or letters are lost")
        self.table = table
        self.topic = topic
        self.optional = frozenset(optional)
        self.keep = keep
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

    def deliver(
        self, letters: Sequence[DeadLetter], *, only: Collection[str] | None = None
    ) -> DeadLetterDelivery:
        """A delivery of `letters` to every store (or those in `only`); call `attempt()`."""
        if self.keep is not None:
            letters = [letter for letter in letters if self.keep(letter)]
        return DeadLetterDelivery(self, letters, only=only)

    async def write(
        self, letters: Sequence[DeadLetter], *, only: Collection[str] | None = None
    ) -> WriteResult:
        """One attempt to write `letters` to every store (or to the stores in `only`).

        Raises DeadLetterStoreError (with `.stores`) naming each required store that failed.
        """
        return await self.deliver(letters, only=only).attempt()

    def _send(self, name: str, letters: Sequence[DeadLetter]) -> Awaitable[None]:
        if self.table is not None and name == self.table.store_name:
            return self.table.write(letters)
        assert self.topic is not None
        return self.topic.publish(letters)


class DeadLetterDelivery:
    """One batch of letters on its way to every store, remembering what each store has."""

    def __init__(
        self,
        writer: DeadLetterWriter,
        letters: Sequence[DeadLetter],
        *,
        only: Collection[str] | None = None,
    ) -> None:
        self._writer = writer
        self.letters = tuple(letters)
        #: per store, positions in `letters` the store has not acknowledged yet
        self.pending: dict[str, list[int]] = {
            name: list(range(len(self.letters)))
            for name in writer.stores
            if only is None or name in only
        }
        self._written: list[str] = []
        self._failed_optional: list[str] = []

    @property
    def held(self) -> int:
        """Letters that some required store does not have yet."""
        missing: set[int] = set()
        for name, positions in self.pending.items():
            if name not in self._writer.optional:
                missing.update(positions)
        return len(missing)

    async def attempt(self) -> WriteResult:
        """Send each store what it lacks; DeadLetterStoreError while a required store fails.

        Success returns which stores hold every letter and which optional ones gave up.
        """
        writer = self._writer
        names = [name for name, positions in self.pending.items() if positions]
        if not names:
            for name in list(self.pending):
                self._finish(name)
            return self._result()
        sent = {name: list(self.pending[name]) for name in names}
        results = await asyncio.gather(
            *(writer._send(name, [self.letters[i] for i in sent[name]]) for name in names),
            return_exceptions=True,
        )
        failures: list[tuple[str, DeadLetterStoreError]] = []
        for name, result in zip(names, results, strict=True):
            if result is None:
                self._finish(name)
            elif isinstance(result, DeadLetterStoreError):
                if name in writer.optional:
                    log.warning("optional dead-letter store %s failed: %s", name, result)
                    self._failed_optional.append(name)
                    self.pending.pop(name)
                    continue
                if result.unacknowledged is not None:
                    self.pending[name] = [sent[name][i] for i in result.unacknowledged]
                failures.append((name, result))
            else:
                raise result  # a bug, not an unavailable store: let it surface as itself
        for name in [n for n, positions in self.pending.items() if not positions]:
            self._finish(name)
        if failures:
            raise DeadLetterStoreError(
                "; ".join(str(error) for _name, error in failures),
                stores=tuple(name for name, _error in failures),
            ) from failures[0][1]
        return self._result()

    def _finish(self, name: str) -> None:
        self.pending.pop(name, None)
        if name not in self._written:
            self._written.append(name)

    def _result(self) -> WriteResult:
        return WriteResult(tuple(self._written), tuple(self._failed_optional))


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Which stores now hold the letters, and which optional ones failed."""

    written: tuple[str, ...]
    failed_optional: tuple[str, ...]


__all__ = ["DeadLetterDelivery", "DeadLetterWriter", "WriteResult"]
