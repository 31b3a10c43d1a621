"""Where the integration tests' servers come from, and per-test Postgres databases.

Preference, per server: an env var naming a running server (STREAM_INDEXER_TEST_KAFKA,
STREAM_INDEXER_TEST_OPENSEARCH, STREAM_INDEXER_TEST_POSTGRES); else Docker containers when
STREAM_INDEXER_TEST_STACK=docker; else the embedded stack (child processes, no Docker).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from stream_indexer.devtools.devstack import EmbeddedStack, StackEndpoints
from stream_indexer.settings import Settings

ENV_KAFKA = "STREAM_INDEXER_TEST_KAFKA"
ENV_OPENSEARCH = "STREAM_INDEXER_TEST_OPENSEARCH"
ENV_POSTGRES = "STREAM_INDEXER_TEST_POSTGRES"
ENV_STACK = "STREAM_INDEXER_TEST_STACK"

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
OPENSEARCH_IMAGE = "opensearchproject/opensearch:2.19.1"
POSTGRES_IMAGE = "postgres:16-alpine"

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
T = TypeVar("T")


class TopicFactory(Protocol):
    """The `topic_factory` fixture: creates a topic (6 partitions by default), returns its name."""

    async def __call__(self, partitions: int = 6, name: str | None = None) -> str: ...


class SettingsFactory(Protocol):
    """The `settings_for` fixture: `pipeline_settings` for one topic on this test's stack."""

    def __call__(self, topic: str, **extra: Any) -> Settings: ...


@contextmanager
def provide_stack() -> Iterator[StackEndpoints]:
    """Endpoints for the session, from env vars, Docker or the embedded stack (in that order)."""
    kafka = os.environ.get(ENV_KAFKA) or None
    opensearch = os.environ.get(ENV_OPENSEARCH) or None
    postgres = os.environ.get(ENV_POSTGRES) or None
    if kafka and opensearch and postgres:
        yield StackEndpoints(kafka, opensearch, postgres)
        return
    mode = os.environ.get(ENV_STACK, "embedded").strip().lower() or "embedded"
    if mode == "docker":
        with _docker_stack(kafka, opensearch, postgres) as endpoints:
            yield endpoints
    elif mode == "embedded":
        with EmbeddedStack(
            kafka_bootstrap=kafka, opensearch_url=opensearch, postgres_dsn=postgres
        ) as endpoints:
            yield endpoints
    else:
        raise ValueError(f"{ENV_STACK} must be 'embedded' or 'docker', not {mode!r}")


@contextmanager
def _docker_stack(
    kafka: str | None, opensearch: str | None, postgres: str | None
) -> Iterator[StackEndpoints]:
    """testcontainers for the servers not given by env vars (imported only in this mode)."""
    with ExitStack() as containers:
        if kafka is None:
            from testcontainers.community.kafka import KafkaContainer

            kafka_c = containers.enter_context(KafkaContainer(KAFKA_IMAGE))
            kafka = kafka_c.get_bootstrap_server()
        if opensearch is None:
            from testcontainers.community.opensearch import OpenSearchContainer

            os_c = OpenSearchContainer(OPENSEARCH_IMAGE, security_enabled=False)
            os_c.with_env("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m")
            config = containers.enter_context(os_c).get_config()
            opensearch = f"http://{config['host']}:{config['port']}"
        if postgres is None:
            from testcontainers.community.postgres import PostgresContainer

            pg_c = containers.enter_context(PostgresContainer(POSTGRES_IMAGE, driver=None))
            postgres = pg_c.get_connection_url()
        assert kafka and opensearch and postgres
        yield StackEndpoints(kafka, opensearch, postgres)


def run_sync(make_coro: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, in its own thread and event loop, so it
    works whether or not the caller's thread is already running a loop."""

    async def main() -> T:
        return await make_coro()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-sync") as pool:
        return pool.submit(asyncio.run, main()).result()


def with_database(dsn: str, database: str) -> str:
    """`dsn` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def create_database(dsn: str, database: str) -> str:
    """CREATE DATABASE on the server of `dsn`; returns the new database's DSN."""
    _check_name(database)
    run_sync(lambda: _admin(dsn, f'CREATE DATABASE "{database}"'))
    return with_database(dsn, database)


def drop_database(dsn: str, database: str) -> None:
    """DROP DATABASE ... WITH (FORCE): disconnects whatever a test left open."""
    _check_name(database)
    run_sync(lambda: _admin(dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _check_name(database: str) -> None:
    if not _DB_NAME.match(database):
        raise ValueError(f"unsafe database name {database!r}")
