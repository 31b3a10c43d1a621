"""Source database: the connection pool thin-event hydration and source scans read through.

The pool connects on first use (min_size 0): a source database that is down delays the
work that reads it (thin events, a reindex, a drift check), never the start of the service.
"""

from __future__ import annotations

import asyncpg

from stream_indexer.errors import SourceUnavailableError
from stream_indexer.lifecycle import Lifecycle


class SourcePool(Lifecycle):
    """Owns the asyncpg pool of the source database; subclasses hold the queries."""

    def __init__(self, dsn: str, *, pool_max_size: int) -> None:
        self._dsn = dsn
        self._pool_max_size = pool_max_size
        self._pool: asyncpg.Pool | None = None

    async def _start(self) -> None:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=self._pool_max_size
                )
            except (OSError, asyncpg.PostgresError) as exc:
                raise SourceUnavailableError(f"source database unreachable: {exc}") from exc

    async def _stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


#: SQLSTATEs of a server going away under a session, not of a query that cannot work:
#: admin shutdown (pg_terminate_backend, a fast stop), crash shutdown, starting up, too many
#: connections (class 08, connection exceptions, is matched by prefix)
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03", "53300"})


def source_down(exc: BaseException) -> bool:
    """True when `exc` (a SourceUnavailableError, or what it wraps) says the source database
    or the connection to it went away, which waiting may cure; False for a query the source
    refuses (a missing table or column, no permission, a wrong password): that fails at once."""
    cause = exc.__cause__ if isinstance(exc, SourceUnavailableError) else exc
    if isinstance(cause, OSError):
        return True  # refused, reset, timed out (TimeoutError is an OSError)
    if isinstance(cause, asyncpg.PostgresError):  # closed mid-query is 08003
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        return sqlstate.startswith("08") or sqlstate in _SERVER_GONE
    return False


def quote_identifier(identifier: str) -> str:
    """`schema.table` -> `"schema"."table"` (settings allow plain identifiers only)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


__all__ = ["SourcePool", "quote_identifier", "source_down"]
