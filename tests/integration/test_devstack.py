"""The local stack and the shared fixtures: servers up, topics, records, databases, shutdown."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from support.stack_fixtures import TopicFactory

from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.devstack import EmbeddedStack, StackEndpoints
from stream_indexer.errors import ConfigError

RECEIVE_TIMEOUT_S = 20.0


def test_stack_gives_three_endpoints(stack: StackEndpoints) -> None:
    assert stack.kafka_bootstrap.rsplit(":", 1)[1].isdigit()
    assert stack.opensearch_url.startswith("http")
    assert stack.postgres_dsn.startswith("postgresql://")


async def test_topic_gets_the_partitions_asked_for(
    topic_factory: TopicFactory, kafka_bootstrap: str
) -> None:
    topic = await topic_factory(partitions=6)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        assert await producer.partitions_for(topic) == set(range(6))
    finally:
        await producer.stop()


async def test_ensure_topic_reports_existing_and_refuses_too_few_partitions(
    kafka_bootstrap: str, unique_name: str
) -> None:
    assert await ensure_topic(kafka_bootstrap, unique_name, partitions=3) is True
    assert await ensure_topic(kafka_bootstrap, unique_name, partitions=3) is False
    assert await ensure_topic(kafka_bootstrap, unique_name, partitions=2) is False
    with pytest.raises(ConfigError, match="3 partitions"):
        await ensure_topic(kafka_bootstrap, unique_name, partitions=6)


async def test_record_with_key_and_headers_round_trips(
    topic_factory: TopicFactory, kafka_bootstrap: str
) -> None:
    topic = await topic_factory(partitions=6)
    headers = [("x-trace", b"abc"), ("x-empty", b"")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topic, b'{"listing_id": 42}', key=b"42", headers=headers, partition=4
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 4)])
        record = await asyncio.wait_for(consumer.getone(), RECEIVE_TIMEOUT_S)
    finally:
        await consumer.stop()
    assert (record.partition, record.offset) == (4, sent.offset)
    assert record.key == b"42"
    assert record.value == b'{"listing_id": 42}'
    assert list(record.headers) == headers


def test_opensearch_answers_with_a_version(opensearch_url: str) -> None:
    with urllib.request.urlopen(opensearch_url, timeout=10) as response:
        info = json.load(response)
    assert info["version"]["number"][0].isdigit()


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_its_own_empty_database(
    pg_dsn: str, stack: StackEndpoints, run: int
) -> None:
    """Both runs create the same table: the second fails if databases were shared."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        await conn.execute("CREATE TABLE isolation_marker (run int)")
    finally:
        await conn.close()
    assert database == urlsplit(pg_dsn).path.lstrip("/")
    assert database != urlsplit(stack.postgres_dsn).path.lstrip("/")
    assert tables == 0


def _process_tree(pids: list[int]) -> list[psutil.Process]:
    procs = [psutil.Process(pid) for pid in pids]
    return procs + [child for proc in procs for child in proc.children(recursive=True)]


def _gone(proc: psutil.Process) -> bool:
    """Exited (a zombie left for a non-reaping init counts as exited)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_leaves_no_process_and_no_files() -> None:
    stack = EmbeddedStack()
    endpoints = stack.start()
    assert endpoints.postgres_dsn.startswith("postgresql://postgres@127.0.0.1:")
    assert set(stack.pids) == {"kafka", "opensearch", "postgres"}
    tree = _process_tree(list(stack.pids.values()))
    rundir = stack.rundir
    assert rundir is not None and rundir.is_dir()

    stack.stop()
    stack.stop()  # idempotent

    assert [p.pid for p in tree if not _gone(p)] == []
    assert not rundir.exists()
    with pytest.raises(RuntimeError):
        stack.endpoints  # noqa: B018


def test_given_endpoints_are_used_and_nothing_is_started() -> None:
    given = StackEndpoints("127.0.0.1:1", "http://127.0.0.1:2", "postgresql://x@127.0.0.1:3/db")
    with EmbeddedStack(
        kafka_bootstrap=given.kafka_bootstrap,
        opensearch_url=given.opensearch_url,
        postgres_dsn=given.postgres_dsn,
    ) as endpoints:
        assert endpoints == given


_CHILD = """
import json, sys
from stream_indexer.devtools.devstack import EmbeddedStack
stack = EmbeddedStack()
stack.start()
print(json.dumps({"pids": list(stack.pids.values()), "rundir": str(stack.rundir)}), flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_servers_die_with_a_sigkilled_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        started = json.loads(parent.stdout.readline())
        tree = _process_tree(started["pids"])
        assert len(tree) >= 3
    finally:
        parent.kill()
        parent.wait()
        parent.stdin.close()
        parent.stdout.close()
    deadline = time.monotonic() + 15
    while not all(_gone(p) for p in tree) and time.monotonic() < deadline:
        psutil.wait_procs([p for p in tree if not _gone(p)], timeout=0.2)
    assert [p.pid for p in tree if not _gone(p)] == []
    shutil.rmtree(started["rundir"], ignore_errors=True)
