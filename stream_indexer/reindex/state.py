"""Reindex, state: one Postgres row per run (what a rerun resumes from) and the run lock.

The row (`stream_indexer_reindex_runs`, migration 000005) holds the phase, the backfill's
keyset checkpoint, the offsets the catch-up starts from and those recorded at the cutover.
Every step that changes what a rerun must do writes the row before it goes on, so a process
killed at any point leaves a row that says where to continue. The lock is a session-level
Postgres advisory lock held on its own connection for as long as the process works on a
run: a second process is refused at once (`ReindexBusyError`), and a killed process's lock
goes with its connection.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from stream_indexer.errors import ReindexBusyError, ReindexError

TABLE = "stream_indexer_reindex_runs"
#: the phases of a run that is not finished (a rerun continues it)
OPEN_PHASES = ("backfill", "catchup", "grace", "rolling_back")
FINAL_PHASES = ("done", "aborted", "failed", "rolled_back")
_LOCK_SALT = "stream-indexer reindex "


@dataclass(slots=True)
class ReindexRun:
    """One row of the runs table."""

    id: int
    alias: str
    old_index: str | None
    new_index: str
    source: str
    phase: str
    last_id: int = 0
    rows_done: int = 0
    rows_total: int = 0
    tombstones_carried: int = 0
    tombstones_done: bool = False
    dead_lettered: int = 0
    resumes: int = 0
    docs_per_s: float | None = None
    catchup_lag: int | None = None
    live_offsets: dict[int, int] | None = None
    cutover_offsets: dict[int, int] | None = None
    index_body: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    cutover_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.phase in OPEN_PHASES

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in self.__slots__:
            if name == "index_body":
                continue  # large, and `GET /<new index>/_mapping` shows it
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, dict):
                value = {str(k): v for k, v in value.items()}
            data[name] = value
        return data


def _offsets_out(value: Any) -> dict[int, int] | None:
    if value is None:
        return None
    raw = orjson.loads(value) if isinstance(value, str | bytes) else value
    return {int(k): int(v) for k, v in raw.items()}


def _offsets_in(offsets: dict[int, int] | None) -> str | None:
    return (
        None if offsets is None else orjson.dumps({str(k): v for k, v in offsets.items()}).decode()
    )


def _run(record: asyncpg.Record) -> ReindexRun:
    data = dict(record)
    data["live_offsets"] = _offsets_out(data["live_offsets"])
    data["cutover_offsets"] = _offsets_out(data["cutover_offsets"])
    body = data["index_body"]
    data["index_body"] = orjson.loads(body) if isinstance(body, str | bytes) else body
    return ReindexRun(**data)


def lock_id(alias: str) -> int:
    """The advisory lock key of reindexing `alias` (a signed 64-bit integer)."""
    digest = zlib.crc32((_LOCK_SALT + alias).encode())
    return (digest << 16) ^ 0x5EED  # keep clear of golang-migrate's 32-bit range


class RunStore:
    """Reads and writes run rows on a pool the caller owns."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open_run(self, alias: str) -> ReindexRun | None:
        """The unfinished run of `alias`, if any."""
        record = await self._pool.fetchrow(
            f"SELECT * FROM {TABLE} WHERE alias = $1 AND phase = ANY($2::text[]) "
            "ORDER BY id DESC LIMIT 1",
            alias,
            list(OPEN_PHASES),
        )
        return None if record is None else _run(record)

    async def latest(self, alias: str) -> ReindexRun | None:
        record = await self._pool.fetchrow(
            f"SELECT * FROM {TABLE} WHERE alias = $1 ORDER BY id DESC LIMIT 1", alias
        )
        return None if record is None else _run(record)

    async def get(self, run_id: int) -> ReindexRun:
        record = await self._pool.fetchrow(f"SELECT * FROM {TABLE} WHERE id = $1", run_id)
        if record is None:
            raise ReindexError(f"reindex run {run_id} not found")
        return _run(record)

    async def create(
        self, *, alias: str, old_index: str | None, new_index: str, source: str, rows_total: int
    ) -> ReindexRun:
        record = await self._pool.fetchrow(
            f"INSERT INTO {TABLE} (alias, old_index, new_index, source, phase, rows_total) "
            "VALUES ($1, $2, $3, $4, 'backfill', $5) RETURNING *",
            alias,
            old_index,
            new_index,
            source,
            rows_total,
        )
        assert record is not None
        return _run(record)

    async def transition(
        self, run: ReindexRun, expected: str | tuple[str, ...], phase: str, **changes: Any
    ) -> bool:
        """Move `run` to `phase` only if its row is still in `expected` (another process may
        have aborted it meanwhile); False when it was not."""
        allowed = [expected] if isinstance(expected, str) else list(expected)
        moved = await self._pool.fetchval(
            f"UPDATE {TABLE} SET phase = $2, updated_at = now() "
            "WHERE id = $1 AND phase = ANY($3::text[]) RETURNING id",
            run.id,
            phase,
            allowed,
        )
        if moved is None:
            return False
        run.phase = phase
        await self.update(run, **changes)
        return True

    async def update(self, run: ReindexRun, **changes: Any) -> None:
        """Write `changes` to the row (and to `run`); `updated_at` moves."""
        if not changes:
            return
        columns, values = [], []
        for position, (name, value) in enumerate(changes.items(), start=2):
            setattr(run, name, value)
            if name in ("live_offsets", "cutover_offsets"):
                value = _offsets_in(value)
                columns.append(f"{name} = ${position}::jsonb")
            elif name == "index_body":
                value = None if value is None else orjson.dumps(value).decode()
                columns.append(f"{name} = ${position}::jsonb")
            else:
                columns.append(f"{name} = ${position}")
            values.append(value)
        record = await self._pool.fetchrow(
            f"UPDATE {TABLE} SET {', '.join(columns)}, updated_at = now() WHERE id = $1 "
            "RETURNING updated_at, cutover_at, finished_at",
            run.id,
            *values,
        )
        if record is not None:
            run.updated_at, run.cutover_at, run.finished_at = (
                record["updated_at"],
                record["cutover_at"],
                record["finished_at"],
            )


class RunLock:
    """The advisory lock of one alias's reindex, held on a dedicated connection."""

    def __init__(self, dsn: str, alias: str) -> None:
        self._dsn = dsn
        self.alias = alias
        self.key = lock_id(alias)
        self._conn: asyncpg.Connection | None = None

    async def acquire(self) -> None:
        """Take the lock now or raise `ReindexBusyError` (never waits for another run)."""
        conn = await asyncpg.connect(self._dsn)
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
        except BaseException:
            await conn.close()
            raise
        if not got:
            holder = await conn.fetchval(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = $1 LIMIT 1",
                self.key & 0xFFFFFFFFFFFFFFFF,
            )
            await conn.close()
            who = f" (database backend pid {holder})" if holder else ""
            raise ReindexBusyError(
                f"another reindex of {self.alias!r} is running{who}; wait for it, or stop it "
                "with `stream-indexer reindex abort`"
            )
        self._conn = conn

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", self.key)
            finally:
                await conn.close()

    async def __aenter__(self) -> RunLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


__all__ = ["FINAL_PHASES", "OPEN_PHASES", "TABLE", "ReindexRun", "RunLock", "RunStore", "lock_id"]
