"""`dlq` command plumbing: running one action, its database access and its output.

An operational failure (database, broker or cluster unreachable, row not found, purge not
confirmed) prints one line on stderr and exits 1; configuration errors are left to
`cli.main` (exit 2).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from aiokafka.errors import KafkaError

from stream_indexer.dlq.query import DlqQueries
from stream_indexer.errors import OperationFailed, ReplayError, TransientError
from stream_indexer.masking import mask_text
from stream_indexer.settings import Settings

T = TypeVar("T")


#: what makes a command exit 1 with one line (ConfigError is left to `cli.main`: exit 2)
FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    KafkaError,
    TransientError,
    ReplayError,
    OSError,
    TimeoutError,
    ValueError,  # e.g. a DSN option asyncpg refuses (the DSN itself is parsed at load)
    OperationFailed,
)
LAST_ERROR_CHARS = 80


def one_line(action: str, exc: BaseException) -> str:
    text = mask_text(" ".join(str(exc).split())) or type(exc).__name__
    if isinstance(exc, asyncpg.UndefinedTableError):
        text += " (run `stream-indexer migrate up` first)"
    elif not isinstance(exc, OperationFailed | ReplayError | TransientError):
        text = f"{type(exc).__name__}: {text}"
    return f"stream-indexer dlq {action}: {text}"


def run_action(action: str, work: Callable[[], Awaitable[T]]) -> tuple[int, T | None]:
    async def main() -> T:
        return await work()

    try:
        return 0, asyncio.run(main())
    except FAILURES as exc:
        print(one_line(action, exc), file=sys.stderr)
        return 1, None


async def connect(settings: Settings) -> asyncpg.Connection:
    timeout = settings.postgres.command_timeout_s
    conn: asyncpg.Connection = await asyncpg.connect(
        settings.postgres.dsn.get_secret_value(), timeout=timeout, command_timeout=timeout
    )
    return conn


async def with_queries(settings: Settings, work: Callable[[DlqQueries], Awaitable[T]]) -> T:
    queries_table = settings.dlq.table
    conn = await connect(settings)
    try:
        return await work(DlqQueries(conn, queries_table))
    finally:
        await conn.close()


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def short(text: str, limit: int = LAST_ERROR_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


__all__ = [
    "FAILURES",
    "OperationFailed",
    "connect",
    "emit_json",
    "one_line",
    "run_action",
    "short",
    "with_queries",
]
