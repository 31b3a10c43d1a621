"""Dead letters, replay side: record in the table what `dlq replay` published, so `dlq list`
shows the row as "replayed, waiting" until the indexer resolves it (docs/dlq.md, "Lifecycle").

Each published DLQ record names its source record (`x-dlq-original-topic`, `-partition`,
`-offset`); the row holding that source gets `replayed_at = now()` and `replay_count + 1`.
The DLQ topic stays the record of what was replayed: when the table cannot be reached the
replay goes on and the summary counts the records it could not note.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from stream_indexer.dlq.headers import ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TOPIC
from stream_indexer.dlq.query import DlqQueries
from stream_indexer.dlq.table import DATABASE_ERRORS
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


def source_of(headers: Headers) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of the record a DLQ record holds, from its headers."""
    found: dict[str, bytes] = {}
    wanted = {ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET}
    for name, value in headers:
        if name.lower() in wanted:
            found[name.lower()] = value
    try:
        return (
            found[ORIGINAL_TOPIC].decode("utf-8"),
            int(found[ORIGINAL_PARTITION]),
            int(found[ORIGINAL_OFFSET]),
        )
    except (KeyError, UnicodeDecodeError, ValueError):
        return None


class ReplayLedger:
    """Marks replayed rows; connects on first use, `close()` when done. Never raises for
    the table being unreachable: `unrecorded` counts what could not be marked."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: asyncpg.Connection | None = None
        self.unrecorded = 0

    async def replayed(self, sources: Sequence[tuple[str, int, int]]) -> None:
        if not sources:
            return
        try:
            if self._conn is None:
                timeout = self._settings.postgres.command_timeout_s
                self._conn = await asyncpg.connect(
                    self._settings.postgres.dsn.get_secret_value(),
                    timeout=timeout,
                    command_timeout=timeout,
                )
            await DlqQueries(self._conn, self._settings.dlq.table).mark_replayed(sources)
        except DATABASE_ERRORS as exc:
            self.unrecorded += len(sources)
            log.warning("could not mark %d replayed DLQ rows: %s", len(sources), exc)
            await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except DATABASE_ERRORS:
                conn.terminate()


__all__ = ["ReplayLedger", "source_of"]
