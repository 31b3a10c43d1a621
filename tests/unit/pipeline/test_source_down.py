"""Which source errors a drift check waits out (the database or the session went away) and
which fail it at once (the query can never work)."""

from __future__ import annotations

import asyncpg
import pytest

from stream_indexer.errors import SourceUnavailableError
from stream_indexer.pipeline.source_pool import source_down


def _wrapped(cause: BaseException) -> SourceUnavailableError:
    try:
        raise SourceUnavailableError(f"source scan failed: {cause}") from cause
    except SourceUnavailableError as exc:
        return exc


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "reset by peer"),
        TimeoutError(),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),  # 57P01
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle of operation"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_server_or_session_gone_is_waited_for(cause: BaseException) -> None:
    assert source_down(_wrapped(cause))
    assert source_down(cause)


@pytest.mark.parametrize(
    "cause",
    [
        asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'),
        asyncpg.exceptions.UndefinedColumnError('column "version" does not exist'),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),
        asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
        ValueError("not a source error"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_query_the_source_refuses_is_not(cause: BaseException) -> None:
    assert not source_down(_wrapped(cause))
    assert not source_down(SourceUnavailableError("no cause"))
