"""Start-up waits: transient failures are waited out, permanent ones end the wait at once,
and a stop request ends it with StartupAbortedError."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from stream_indexer.app.startup import create_pool, until_ready
from stream_indexer.backoff import Backoff
from stream_indexer.errors import SinkUnavailableError, StartupAbortedError
from stream_indexer.settings import load_settings

NO_WAIT = Backoff(0.0, 2.0, 0.0)


def failing(*errors: BaseException, result: str = "ready") -> Callable[[], Any]:
    """A connect function that raises `errors` in turn, then returns `result`."""
    pending = list(errors)
    calls: list[int] = []

    async def connect() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    connect.calls = calls  # type: ignore[attr-defined]
    return connect


@pytest.mark.parametrize(
    "error",
    [
        OSError("connection refused"),
        TimeoutError(),
        SinkUnavailableError("503"),
        asyncpg.CannotConnectNowError("starting up"),
    ],
)
async def test_transient_failures_are_waited_out(error: BaseException) -> None:
    connect = failing(error, error)
    assert await until_ready("thing", connect, asyncio.Event(), backoff=NO_WAIT) == "ready"
    assert len(connect.calls) == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error",
    [asyncpg.InvalidPasswordError("bad password"), ValueError("bad dsn"), KeyError("x")],
)
async def test_permanent_failures_end_the_wait_at_once(error: BaseException) -> None:
    connect = failing(error)
    with pytest.raises(type(error)):
        await until_ready("thing", connect, asyncio.Event(), backoff=NO_WAIT)
    assert len(connect.calls) == 1  # type: ignore[attr-defined]


async def test_a_stop_request_aborts_the_wait() -> None:
    stopping = asyncio.Event()
    stopping.set()
    with pytest.raises(StartupAbortedError, match="waiting for postgres"):
        await until_ready("postgres", failing(OSError("down")), stopping, backoff=NO_WAIT)


async def test_a_stop_request_interrupts_a_long_backoff() -> None:
    stopping = asyncio.Event()
    forever = failing(*[OSError("down")] * 1000)
    wait = asyncio.create_task(
        until_ready("kafka", forever, stopping, backoff=Backoff(60.0, 1.0, 60.0))
    )
    await asyncio.sleep(0.05)
    stopping.set()
    with pytest.raises(StartupAbortedError):
        await asyncio.wait_for(wait, 2)


async def test_success_on_the_first_try_ignores_a_stop_request() -> None:
    stopping = asyncio.Event()
    stopping.set()
    assert await until_ready("x", failing(), stopping, backoff=NO_WAIT) == "ready"


async def test_create_pool_passes_the_postgres_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def fake_create_pool(dsn: str, **kwargs: Any) -> str:
        seen.update(dsn=dsn, **kwargs)
        return "pool"

    monkeypatch.setattr(asyncpg, "create_pool", fake_create_pool)
    settings = load_settings(
        {"postgres.dsn": "postgresql://u:pw@db/app", "postgres.pool_max_size": 7}
    )
    assert await create_pool(settings) == "pool"
    assert seen == {
        "dsn": "postgresql://u:pw@db/app",
        "min_size": 1,
        "max_size": 7,
        "command_timeout": 10.0,
    }
