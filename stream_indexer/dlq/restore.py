"""Dead letters, replay side: fetch a degraded letter's original bytes back from the table.

A DLQ topic record that left its value out (`x-dlq-value-truncated`, docs/dlq.md "Degraded
letters") is replayed from the table row of the same source record: its key, value and
headers, used only when the row still holds the whole value and its SHA-256 matches the
record's `x-dlq-value-sha256`. A row that was replaced by a newer failure of the listing,
purged, or cut at `dlq.table_max_value_bytes` gives None: the replay skips the record and
counts it rather than publish anything but the original bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from stream_indexer.dlq.degrade import VALUE_SHA256
from stream_indexer.dlq.headers import ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TOPIC
from stream_indexer.dlq.table import decode_headers, quote_table_name
from stream_indexer.settings import Settings

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Original:
    """A source record's bytes as the table keeps them."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def _header(headers: Headers, name: str) -> str | None:
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value.decode("utf-8", "replace")
    return found


class TableOriginals:
    """Looks up originals in the DLQ table; connects on first use, `close()` when done."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: asyncpg.Connection | None = None
        self._sql = (
            "SELECT key, value, headers FROM "
            f"{quote_table_name(settings.dlq.table)} "
            'WHERE topic = $1 AND "partition" = $2 AND "offset" = $3 '
            "AND value_sha256 = $4 AND NOT value_truncated ORDER BY id DESC LIMIT 1"
        )

    async def original(self, headers: Headers) -> Original | None:
        """The original of the DLQ record with `headers`, or None when the table lacks it."""
        topic = _header(headers, ORIGINAL_TOPIC)
        partition = _header(headers, ORIGINAL_PARTITION)
        offset = _header(headers, ORIGINAL_OFFSET)
        digest = _header(headers, VALUE_SHA256)
        if topic is None or digest is None or partition is None or offset is None:
            return None
        try:
            where = (topic, int(partition), int(offset), digest)
        except ValueError:
            return None
        if self._conn is None:
            timeout = self._settings.postgres.command_timeout_s
            self._conn = await asyncpg.connect(
                self._settings.postgres.dsn.get_secret_value(),
                timeout=timeout,
                command_timeout=timeout,
            )
        row = await self._conn.fetchrow(self._sql, *where)
        if row is None:
            return None
        return Original(row["key"], row["value"], decode_headers(row["headers"]))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


__all__ = ["Original", "TableOriginals"]
