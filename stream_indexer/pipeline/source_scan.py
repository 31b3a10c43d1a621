"""Source scan: the source table read in id order, each row with its version (reindex, verify).

A backfill and a drift check read the whole source table (or a sample of it), not the few
rows a batch of thin events names, so they page through it by id (keyset pagination: each
page starts after the last id of the one before, which stays fast at any depth and is the
natural checkpoint of a resumable scan). Every row carries its version from
`SOURCE__VERSION_COLUMN`: an integer, or a timestamp turned into microseconds since the
epoch (as `producer.version_from_datetime` does), so that the version a rebuilt document gets
is the one the row's events carry. A row whose listing or version breaks the contract comes
back as a `SchemaInvalidError` for the caller to dead-letter; it never stops the scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from stream_indexer.errors import SchemaInvalidError, SourceUnavailableError
from stream_indexer.models import Listing
from stream_indexer.pipeline.source_pool import SourcePool, quote_identifier
from stream_indexer.producer.events import version_from_datetime
from stream_indexer.settings import SourceSettings


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One source row: the listing (or why it is invalid), its version, its raw JSON."""

    listing_id: int
    version: int | None
    listing: Listing | SchemaInvalidError
    row_json: str


class SourceScanner(SourcePool):
    """Keyset pages and id lookups over the source table, with each row's version."""

    def __init__(self, dsn: str, source: SourceSettings, *, pool_max_size: int = 2) -> None:
        super().__init__(dsn, pool_max_size=pool_max_size)
        table, id_column = quote_identifier(source.table), quote_identifier(source.id_column)
        version_column = quote_identifier(source.version_column)
        select = (
            f"SELECT {id_column}::bigint, t.{version_column}, row_to_json(t)::text "
            f"FROM {table} AS t"
        )
        self._page_query = f"{select} WHERE {id_column} > $1 ORDER BY {id_column} LIMIT $2"
        self._ids_query = f"{select} WHERE {id_column} = ANY($1::bigint[])"
        self._count_query = f"SELECT count(*) FROM {table}"
        self._sample_query = f"{select} TABLESAMPLE BERNOULLI ($1) ORDER BY {id_column} LIMIT $2"

    async def page(self, after_id: int, limit: int) -> list[SourceRow]:
        """Up to `limit` rows with an id above `after_id`, in id order (0 starts the scan)."""
        return [_row(record) for record in await self._fetch(self._page_query, after_id, limit)]

    async def rows(self, listing_ids: Sequence[int]) -> dict[int, SourceRow]:
        """The rows the source has for `listing_ids`; a missing id is not in the result."""
        records = await self._fetch(self._ids_query, list(listing_ids))
        return {row.listing_id: row for row in map(_row, records)}

    async def sample(self, percent: float, limit: int) -> list[SourceRow]:
        """About `percent`% of the rows, chosen at random by the server, in id order."""
        records = await self._fetch(self._sample_query, percent, limit)
        return [_row(record) for record in records]

    async def count(self) -> int:
        """How many rows the table holds now (for progress and ETA)."""
        records = await self._fetch(self._count_query)
        return int(records[0][0])

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("SourceScanner used before start() or after stop()")
        try:
            return list(await self._pool.fetch(query, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise SourceUnavailableError(f"source scan failed: {exc}") from exc


def _row(record: asyncpg.Record) -> SourceRow:
    listing_id, raw_version, row_json = record[0], record[1], record[2]
    version = row_version(raw_version)
    listing: Listing | SchemaInvalidError
    if version is None:
        listing = SchemaInvalidError(
            f"source row for listing {listing_id} has no usable version "
            f"({type(raw_version).__name__})"
        )
    else:
        try:
            listing = Listing.model_validate_json(row_json)
        except ValidationError as exc:
            listing = SchemaInvalidError(
                f"source row for listing {listing_id} is invalid: "
                f"{exc.errors(include_url=False)[:3]}"
            )
    return SourceRow(listing_id, version, listing, row_json)


def row_version(value: object) -> int | None:
    """The external version a row's version column stands for; None when it has none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return version_from_datetime(value)
    return None


__all__ = ["SourceRow", "SourceScanner", "row_version"]
