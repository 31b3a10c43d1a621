"""Start-up: wait for the service's dependencies instead of crash-looping.

A dependency that is down when a pod starts (OpenSearch, Postgres, Kafka) is waited for with
backoff, exactly as an outage later would be; only a stop request or a permanent error (bad
credentials, a missing database or permission) ends the wait, and `startup_errors` turns that
error into one line naming what to change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from aiokafka.errors import KafkaError

from stream_indexer.backoff import Backoff, RetryPolicy, retry
from stream_indexer.errors import RetryAbortedError, StartupAbortedError, TransientError
from stream_indexer.settings import Settings
from stream_indexer.tls import tls_failure

log = logging.getLogger(__name__)
T = TypeVar("T")

#: asyncpg errors that waiting cannot fix
PERMANENT_POSTGRES_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


def _retriable(exc: BaseException) -> bool:
    if tls_failure(exc) is not None:
        return False  # a certificate or host name the server (or we) refuse
    if isinstance(exc, TransientError | OSError | asyncio.TimeoutError):
        return True
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)  # aiokafka's own flag: connection lost, no brokers, ...
    return isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) and not isinstance(
        exc, PERMANENT_POSTGRES_ERRORS
    )


async def until_ready(
    what: str,
    connect: Callable[[], Awaitable[T]],
    stopping: asyncio.Event,
    *,
    backoff: Backoff | None = None,
) -> T:
    """Call `connect` until it succeeds; raise StartupAbortedError once `stopping` is set.

    What waiting cannot fix (refused credentials, ACLs) is raised at once."""

    def not_ready(attempt: int, exc: BaseException, _delay: float) -> None:
        log.warning("%s not ready (attempt %d): %s", what, attempt, exc)

    policy = RetryPolicy.until_stopped(backoff or Backoff(0.5, 2.0, 10.0), stopping)
    try:
        return await retry(connect, policy, retriable=_retriable, on_retry=not_ready)
    except RetryAbortedError:
        raise StartupAbortedError(f"stopped while waiting for {what}") from None


async def create_pool(settings: Settings) -> Any:
    """The asyncpg pool for the DLQ table."""
    pg = settings.postgres
    return await asyncpg.create_pool(
        pg.dsn.get_secret_value(),
        min_size=pg.pool_min_size,
        max_size=pg.pool_max_size,
        command_timeout=pg.command_timeout_s,
    )


__all__ = ["PERMANENT_POSTGRES_ERRORS", "StartupAbortedError", "create_pool", "until_ready"]
