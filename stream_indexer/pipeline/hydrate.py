"""Hydration: load the listing for thin events (index without `data`) from the source DB.

One query per batch (`WHERE id = ANY($1)`), never one per event. A listing that the source
no longer has is written as a delete at the event's version: the row is gone, so the
document must go too. A row that breaks the listing contract is a poison record. A query
the server rejects for the data it read (SQLSTATE 22xxx/54xxx, e.g. an id out of bigint
range) raises `SourceRowRejectedError`: the caller splits the batch to find the row.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from pydantic import ValidationError

from stream_indexer.errors import (
    SchemaInvalidError,
    SourceRowRejectedError,
    SourceUnavailableError,
)
from stream_indexer.models import Listing
from stream_indexer.pipeline.source_pool import SourcePool
from stream_indexer.pipeline.source_pool import quote_identifier as _quote
from stream_indexer.settings import SourceSettings

# SQLSTATE classes for "the data read", not "the server": 22 data exception, 54 limits.
_ROW_SQLSTATE_CLASSES = frozenset({"22", "54"})

#: what `load()` returns per requested id: the listing, None (missing) or the poison error
Hydrated = Listing | SchemaInvalidError | None


class SourceLoader(SourcePool):
    """Batched reads of listings by id from the source table."""

    def __init__(self, dsn: str, source: SourceSettings, *, pool_max_size: int = 4) -> None:
        super().__init__(dsn, pool_max_size=pool_max_size)
        self._query = (
            f"SELECT {_quote(source.id_column)}::bigint, row_to_json(t)::text "
            f"FROM {_quote(source.table)} AS t "
            f"WHERE {_quote(source.id_column)} = ANY($1::bigint[])"
        )

    async def load(self, listing_ids: Sequence[int]) -> dict[int, Hydrated]:
        """Listings by id; ids the source does not have map to None."""
        if self._pool is None:
            raise RuntimeError("SourceLoader.load() before start() or after stop()")
        try:
            rows = await self._pool.fetch(self._query, list(listing_ids))
        except asyncpg.PostgresError as exc:
            if str(getattr(exc, "sqlstate", ""))[:2] in _ROW_SQLSTATE_CLASSES:
                raise SourceRowRejectedError(
                    f"source query failed on the data of listing(s) "
                    f"{_ids(listing_ids)}: {type(exc).__name__}: {exc}"
                ) from exc
            raise SourceUnavailableError(f"source query failed: {exc}") from exc
        except (OSError, asyncpg.InterfaceError) as exc:
            raise SourceUnavailableError(f"source query failed: {exc}") from exc
        found: dict[int, Hydrated] = dict.fromkeys(listing_ids)
        for listing_id, row_json in rows:
            try:
                found[listing_id] = Listing.model_validate_json(row_json)
            except ValidationError as exc:
                found[listing_id] = SchemaInvalidError(
                    f"source row for listing {listing_id} is invalid: "
                    f"{exc.errors(include_url=False)[:3]}"
                )
        return found


def _ids(listing_ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in listing_ids[:5])
    return shown + (f" (+{len(listing_ids) - 5} more)" if len(listing_ids) > 5 else "")
