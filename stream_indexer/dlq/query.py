"""Dead letters, operator side: read, summarise and purge the Postgres DLQ table (`dlq list`,
`show`, `stats`, `purge`; `retry` selects its rows here too).

Filters are resolved against the database clock once per command (`SELECT now()`), so the
count a purge asks to confirm and the rows it then deletes use the same cut-off. Ages are
measured from `created_at`, when the row first entered the table; a row that keeps failing
keeps its age (its `last_attempt_at` moves, its `created_at` does not).

Rows have a lifecycle (migration 000004, `resolver.py`): open (`resolved_at` NULL) until
resolved `indexed`, `superseded`, `stale` or `purged`. `list` and `stats` show open rows
unless asked for `all` or `resolved`; `purge` resolves rows as `purged` (an audit row
stays) unless hard; retention deletes resolved rows by `resolved_at`.

How times are written and bytes shown to the operator lives in `humanize.py`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from stream_indexer.dlq.humanize import show_bytes
from stream_indexer.dlq.table import decode_headers, quote_table_name

#: (label, upper bound) of the age buckets `stats` counts; the last bucket has no bound
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1h", timedelta(hours=1)),
    ("<24h", timedelta(hours=24)),
    ("<7d", timedelta(days=7)),
    ("older", None),
)

_SUMMARY_COLUMNS = (
    "id, listing_id, action, error_class, attempts, last_error, created_at, last_attempt_at, "
    'topic, "partition", "offset", version, resolved_at, resolution, replayed_at, replay_count'
)
#: which rows by lifecycle state: open (the default of list and stats), resolved, all
STATES = ("open", "resolved", "all")
_STATE_CONDITION = {
    "open": "resolved_at IS NULL",
    "resolved": "resolved_at IS NOT NULL",
    "all": None,
}


@dataclass(frozen=True, slots=True)
class RowFilter:
    """Which rows a command acts on; every field set narrows the selection."""

    error_class: str | None = None
    listing_id: int | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    state: str = "all"
    #: resolved more than this long ago (retention of history)
    resolved_older_than: timedelta | None = None

    def where(self, now: datetime, first_param: int = 1) -> tuple[str, list[Any]]:
        """The SQL condition (`TRUE` when empty) and its parameters, ages cut at `now`."""
        conditions: list[str] = []
        params: list[Any] = []

        def param(value: Any) -> str:
            params.append(value)
            return f"${first_param + len(params) - 1}"

        if self.error_class is not None:
            conditions.append(f"error_class = {param(self.error_class)}")
        if self.listing_id is not None:
            conditions.append(f"listing_id = {param(self.listing_id)}")
        if self.older_than is not None:
            conditions.append(f"created_at < {param(now - self.older_than)}")
        if self.newer_than is not None:
            conditions.append(f"created_at >= {param(now - self.newer_than)}")
        state = _STATE_CONDITION[self.state]
        if state is not None:
            conditions.append(state)
        if self.resolved_older_than is not None:
            conditions.append(f"resolved_at < {param(now - self.resolved_older_than)}")
        return (" AND ".join(conditions) or "TRUE"), params


@dataclass(frozen=True, slots=True)
class DlqRow:
    """One table row; `key`, `value`, `headers`, `data` are None in summaries (`list`)."""

    id: int
    listing_id: int | None
    action: str
    error_class: str
    attempts: int
    last_error: str
    created_at: datetime
    last_attempt_at: datetime
    topic: str | None
    partition: int | None
    offset: int | None
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] | None = None
    data: Any = None
    consumer_group: str | None = None
    #: the original value's size and SHA-256 (hex); `value` holds only its first bytes
    #: when `value_truncated` (over `dlq.table_max_value_bytes`)
    value_size: int | None = None
    value_sha256: str | None = None
    value_truncated: bool = False
    #: lifecycle (migration 000004): the letter's event version, how and when it closed,
    #: and what `dlq replay` published for it
    version: int | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    replayed_at: datetime | None = None
    replay_count: int = 0

    @property
    def state(self) -> str:
        """`open`, `replayed, waiting` (published by replay, not resolved yet) or the
        resolution."""
        if self.resolution is not None:
            return self.resolution
        return "replayed, waiting" if self.replayed_at is not None else "open"

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> DlqRow:
        # columns added by later migrations than this code knows are passed over
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        if "headers" in fields:
            fields["headers"] = decode_headers(fields["headers"])
        if isinstance(fields.get("data"), str):
            fields["data"] = json.loads(fields["data"])
        return cls(**fields)

    def summary(self, now: datetime) -> dict[str, Any]:
        """The `list --json` object."""
        return {
            "id": self.id,
            "listing_id": self.listing_id,
            "action": self.action,
            "error_class": self.error_class,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "last_attempt_at": self.last_attempt_at.isoformat(),
            "age_seconds": int((now - self.created_at).total_seconds()),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "version": self.version,
            "state": self.state,
            "resolution": self.resolution,
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "replayed_at": None if self.replayed_at is None else self.replayed_at.isoformat(),
            "replay_count": self.replay_count,
        }

    def detail(self, now: datetime) -> dict[str, Any]:
        """The `show --json` object: the summary plus the source record, bytes shown safely."""
        return {
            **self.summary(now),
            "consumer_group": self.consumer_group,
            "key": show_bytes(self.key),
            "value": show_bytes(self.value),
            "value_size": self.value_size,
            "value_sha256": self.value_sha256,
            "value_truncated": self.value_truncated,
            "headers": [[name, show_bytes(value)] for name, value in self.headers or ()],
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class DlqStats:
    """What `dlq stats` reports."""

    total: int
    by_error_class: dict[str, int]
    by_age: dict[str, int]
    oldest_created_at: datetime | None
    now: datetime
    state: str = "open"
    #: the whole table by lifecycle: open, and resolved by resolution
    by_state: dict[str, int] | None = None

    @property
    def oldest_age(self) -> timedelta | None:
        return None if self.oldest_created_at is None else self.now - self.oldest_created_at

    def to_json(self) -> dict[str, Any]:
        age = self.oldest_age
        return {
            "state": self.state,
            "total": self.total,
            "by_state": self.by_state or {},
            "by_error_class": self.by_error_class,
            "by_age": self.by_age,
            "oldest": None
            if self.oldest_created_at is None or age is None
            else {
                "created_at": self.oldest_created_at.isoformat(),
                "age_seconds": int(age.total_seconds()),
            },
        }


class DlqQueries:
    """Operator queries on the DLQ table through one connection."""

    def __init__(self, conn: asyncpg.Connection, table: str) -> None:
        self._conn = conn
        self.table = table
        self._quoted = quote_table_name(table)

    async def now(self) -> datetime:
        """The database's clock: every cut-off of one command is taken from one reading."""
        now: datetime = await self._conn.fetchval("SELECT now()")
        return now.astimezone(UTC)

    async def list_rows(
        self, where: RowFilter, now: datetime, *, limit: int | None = None, full: bool = False
    ) -> list[DlqRow]:
        """Matching rows, oldest id first; `full` adds key, value, headers, data."""
        condition, params = where.where(now)
        columns = "*" if full else _SUMMARY_COLUMNS
        sql = f"SELECT {columns} FROM {self._quoted} WHERE {condition} ORDER BY id"
        if limit is not None:
            params.append(limit)
            sql += f" LIMIT ${len(params)}"
        return [DlqRow.from_record(r) for r in await self._conn.fetch(sql, *params)]

    async def rows_after(
        self, where: RowFilter, now: datetime, after_id: int, limit: int
    ) -> list[DlqRow]:
        """Up to `limit` full matching rows with an id above `after_id` (batched scans)."""
        condition, params = where.where(now, first_param=3)
        sql = f"SELECT * FROM {self._quoted} WHERE id > $1 AND {condition} ORDER BY id LIMIT $2"
        records = await self._conn.fetch(sql, after_id, limit, *params)
        return [DlqRow.from_record(r) for r in records]

    async def get(self, row_id: int) -> DlqRow | None:
        record = await self._conn.fetchrow(f"SELECT * FROM {self._quoted} WHERE id = $1", row_id)
        return None if record is None else DlqRow.from_record(record)

    async def count(self, where: RowFilter, now: datetime) -> int:
        condition, params = where.where(now)
        total: int = await self._conn.fetchval(
            f"SELECT count(*) FROM {self._quoted} WHERE {condition}", *params
        )
        return total

    async def purge(self, where: RowFilter, now: datetime, *, hard: bool = False) -> int:
        """Resolve matching open rows as `purged` (audit rows stay), or with `hard` delete
        every matching row; returns how many."""
        condition, params = where.where(now)
        if hard:
            sql = f"DELETE FROM {self._quoted} WHERE {condition}"
        else:
            sql = (
                f"UPDATE {self._quoted} SET resolved_at = now(), resolution = 'purged' "
                f"WHERE resolved_at IS NULL AND {condition}"
            )
        status: str = await self._conn.execute(sql, *params)
        return int(status.split()[-1])

    async def stats(self, now: datetime, state: str = "open") -> DlqStats:
        selected = _STATE_CONDITION[state] or "TRUE"
        by_class = await self._conn.fetch(
            f"SELECT error_class, count(*) AS n FROM {self._quoted} WHERE {selected} "
            "GROUP BY error_class ORDER BY n DESC, error_class"
        )
        by_state = await self._conn.fetch(
            f"SELECT coalesce(resolution, 'open') AS state, count(*) AS n FROM {self._quoted} "
            "GROUP BY 1 ORDER BY 1"
        )
        bounds = [bound for _label, bound in AGE_BUCKETS if bound is not None]
        buckets = " ".join(f"WHEN created_at > ${i + 1} THEN {i}" for i in range(len(bounds)))
        by_age_rows = await self._conn.fetch(
            f"SELECT CASE {buckets} ELSE {len(bounds)} END AS bucket, count(*) AS n "
            f"FROM {self._quoted} WHERE {selected} GROUP BY bucket",
            *[now - bound for bound in bounds],
        )
        counts = {int(r["bucket"]): int(r["n"]) for r in by_age_rows}
        oldest: datetime | None = await self._conn.fetchval(
            f"SELECT min(created_at) FROM {self._quoted} WHERE {selected}"
        )
        return DlqStats(
            total=sum(counts.values()),
            by_error_class={str(r["error_class"]): int(r["n"]) for r in by_class},
            by_age={label: counts.get(i, 0) for i, (label, _b) in enumerate(AGE_BUCKETS)},
            oldest_created_at=None if oldest is None else oldest.astimezone(UTC),
            now=now,
            state=state,
            by_state={str(r["state"]): int(r["n"]) for r in by_state},
        )

    async def mark_succeeded(self, rows: Sequence[tuple[DlqRow, str]]) -> int:
        """Resolve rows a retry wrote (`indexed`) or found stale, unless the indexer updated
        them meanwhile (then the row holds a newer failure, which must stay open) or resolved
        them already. Returns how many were resolved."""
        if not rows:
            return 0
        status: str = await self._conn.execute(
            f"UPDATE {self._quoted} AS d SET resolved_at = now(), resolution = r.resolution "
            "FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) "
            "AS r(id, seen, resolution) "
            "WHERE d.id = r.id AND d.last_attempt_at = r.seen AND d.resolved_at IS NULL",
            [row.id for row, _r in rows],
            [row.last_attempt_at for row, _r in rows],
            [resolution for _row, resolution in rows],
        )
        return int(status.split()[-1])

    async def mark_replayed(self, sources: Sequence[tuple[str, int, int]]) -> int:
        """Record that `dlq replay` published the record each row holds (by its source topic,
        partition, offset): `replayed_at = now()`, `replay_count + 1`. A row a newer failure
        replaced meanwhile holds another source and is left alone."""
        if not sources:
            return 0
        status: str = await self._conn.execute(
            f"UPDATE {self._quoted} AS d SET replayed_at = now(), "
            "replay_count = d.replay_count + 1 "
            "FROM unnest($1::text[], $2::integer[], $3::bigint[]) AS s(topic, p, o) "
            'WHERE d.topic = s.topic AND d."partition" = s.p AND d."offset" = s.o',
            [topic for topic, _p, _o in sources],
            [partition for _t, partition, _o in sources],
            [offset for _t, _p, offset in sources],
        )
        return int(status.split()[-1])

    async def mark_failed(self, failures: Sequence[tuple[DlqRow, str, str]]) -> int:
        """Record another failed attempt for each (row, error class, message): attempts + 1,
        `last_error`, `error_class`, `last_attempt_at = now()`; rows the indexer changed
        meanwhile are left alone. Returns how many were updated."""
        if not failures:
            return 0
        status: str = await self._conn.execute(
            f"UPDATE {self._quoted} AS d SET attempts = d.attempts + 1, last_error = r.error, "
            "error_class = r.error_class, last_attempt_at = now() "
            "FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[]) "
            "AS r(id, seen, error_class, error) "
            "WHERE d.id = r.id AND d.last_attempt_at = r.seen",
            [row.id for row, _c, _m in failures],
            [row.last_attempt_at for row, _c, _m in failures],
            [error_class for _r, error_class, _m in failures],
            [message for _r, _c, message in failures],
        )
        return int(status.split()[-1])


__all__ = [
    "AGE_BUCKETS",
    "STATES",
    "DlqQueries",
    "DlqRow",
    "DlqStats",
    "RowFilter",
]
