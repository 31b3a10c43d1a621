"""Events from another Kafka client: librdkafka (confluent-kafka), every compression codec.

Drives the service only through its contract, as an operator would: `stream-indexer migrate
up` and `stream-indexer run` as processes configured by `STREAM_INDEXER_*` variables. The
records come from librdkafka, whose partitioner, batching and codec framing differ from
aiokafka's; the index must still be exact, every poison record dead-lettered in both stores,
and every offset committed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from support.pipeline import (
    assert_index_matches,
    caught_up,
    committed_offsets,
    dlq_rows,
    kill,
    read_topic,
    settings_env,
    start_indexer,
    wait_exit,
    wait_for,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.devtools.demo import plan_events

pytestmark = pytest.mark.slow

PARTITIONS = 6
CODECS = ("gzip", "snappy", "lz4", "zstd")


def _produce_with_librdkafka(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]
) -> dict[int, int]:
    """Produce `records` in order, a quarter with each codec; returns end offsets."""
    ends: dict[int, int] = {}
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))
            return
        partition, offset = message.partition(), message.offset()
        ends[partition] = max(ends.get(partition, 0), offset + 1)

    share = -(-len(records) // len(CODECS))
    for i, codec in enumerate(CODECS):
        producer = Producer(
            {"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5}
        )
        for key, value in records[i * share : (i + 1) * share]:
            producer.produce(topic, value=value, key=key, on_delivery=delivered)
            producer.poll(0)
        assert producer.flush(30) == 0, f"{codec}: records left undelivered"
    assert not failures, failures[:3]
    return ends


async def test_librdkafka_compressed_stream_is_indexed_exactly_through_the_cli(
    kafka_bootstrap: str,
    opensearch_url: str,
    pg_dsn: str,
    topic_factory: TopicFactory,
    tmp_path: Path,
    settings_for: SettingsFactory,
) -> None:
    topic = await topic_factory(partitions=PARTITIONS)
    settings = settings_for(topic)
    env = settings_env(settings)
    migrate = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "stream_indexer", "migrate", "up"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]

    plan = plan_events(4_000, listings=800, seed=17, poison_every=200)
    assert plan.poison and plan.deletes and plan.out_of_order
    ends = await asyncio.to_thread(
        _produce_with_librdkafka, kafka_bootstrap, topic, list(plan.records)
    )
    assert sum(ends.values()) == len(plan.records)

    indexer = start_indexer(settings, log_path=str(tmp_path / "indexer.log"))
    try:
        await wait_for(
            lambda: caught_up(kafka_bootstrap, settings.kafka.group_id, topic, ends, PARTITIONS),
            within_s=150,
            what="the indexer to commit every produced offset",
        )
        indexer.send_signal(signal.SIGTERM)
        assert await wait_exit(indexer, 40) == 0
    finally:
        kill(indexer)

    committed = await committed_offsets(kafka_bootstrap, settings.kafka.group_id, topic, PARTITIONS)
    assert {p: committed[p] for p in ends} == ends
    await assert_index_matches(opensearch_url, settings.opensearch.index, plan)
    rows = await dlq_rows(pg_dsn)
    assert len(rows) == plan.poison
    assert all(row["value"] is not None for row in rows)
    dead = await read_topic(kafka_bootstrap, settings.dlq_topic, expected=plan.poison)
    assert len(dead) == plan.poison
