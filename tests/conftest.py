"""Session fixtures for the integration tests: the servers, fresh databases, topics, names.

Fixtures are lazy: a test that asks for none of them (all of tests/unit) starts no server.
Where the servers come from is decided in `support.stack_fixtures` (env vars, Docker or the
embedded stack).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from osmem_server import OsmemServer
from support.pipeline import pipeline_settings
from support.stack_fixtures import (
    SettingsFactory,
    TopicFactory,
    create_database,
    drop_database,
    provide_stack,
)

from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.devstack import StackEndpoints
from stream_indexer.masking import forget_all
from stream_indexer.settings import Settings

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration is marked `integration` (select with -m)."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def forget_remembered_secrets() -> Iterator[None]:
    """Loading settings makes the masker remember their secrets for the whole process; one
    test's secrets must not mask another test's expected output."""
    yield
    forget_all()


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    """Kafka, OpenSearch and Postgres for the whole session."""
    with provide_stack() as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: StackEndpoints) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def opensearch_url(stack: StackEndpoints) -> str:
    return stack.opensearch_url


@pytest.fixture
def unique_name() -> str:
    """A short unique lowercase name for this test's topics, indices and groups."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg_dsn(stack: StackEndpoints) -> Iterator[str]:
    """DSN of a fresh, empty database for this test only, dropped (FORCE) afterwards."""
    database = f"t{uuid.uuid4().hex[:12]}"
    dsn = create_database(stack.postgres_dsn, database)
    try:
        yield dsn
    finally:
        drop_database(stack.postgres_dsn, database)


@pytest.fixture
def topic_factory(kafka_bootstrap: str, unique_name: str) -> TopicFactory:
    """`await topic_factory(partitions=6, name=None)` creates a topic and returns its name.

    Default names are `<unique_name>-<n>`. Topics are created before any client touches
    them, since tansu would auto-create unknown ones with 4 partitions.
    """
    counter = itertools.count()

    async def create(partitions: int = 6, name: str | None = None) -> str:
        topic = name or f"{unique_name}-{next(counter)}"
        await ensure_topic(kafka_bootstrap, topic, partitions=partitions)
        return topic

    return create


@pytest.fixture
def settings_for(
    kafka_bootstrap: str, opensearch_url: str, pg_dsn: str, unique_name: str
) -> SettingsFactory:
    """`settings_for(topic, **overrides)`: this test's stack, fresh database and names."""

    def make(topic: str, **extra: Any) -> Settings:
        return pipeline_settings(
            bootstrap=kafka_bootstrap,
            opensearch_url=opensearch_url,
            pg_dsn=pg_dsn,
            topic=topic,
            name=unique_name,
            **extra,
        )

    return make


@pytest.fixture(scope="session")
def osmem_server() -> Iterator[OsmemServer]:
    """Overrides the osmem plugin's fixture: osmem-server 0.1.6's `close()` leaves its
    stdout pipe open, which `filterwarnings = error` turns into a failed run."""
    server = OsmemServer.start(freeze=True, japanese=False)
    try:
        yield server
    finally:
        server.close()
        if server.process.stdout is not None:
            server.process.stdout.close()
