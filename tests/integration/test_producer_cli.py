"""`stream-indexer produce` and `loadgen` as a user runs them, against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from stream_indexer.models import ListingEvent


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_INDEXER_")}
    env["STREAM_INDEXER_PRODUCER__ENABLE_IDEMPOTENCE"] = "false"
    return env


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stream_indexer",
        *args,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def topic_values(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        out: list[bytes] = []
        async with asyncio.timeout(60):
            while True:
                batch = await consumer.getmany(timeout_ms=300)
                if not batch and len(out) >= expected:
                    return out
                for messages in batch.values():
                    out.extend(m.value for m in messages)
    finally:
        await consumer.stop()


def event_line(listing_id: int, **data: object) -> bytes:
    listing = {
        "id": listing_id,
        "title": "Chair",
        "price": 5,
        "status": "active",
        "updated_at": "2025-01-01T00:00:00Z",
        **data,
    }
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "action": "index",
            "listing_id": listing_id,
            "version": 1,
            "occurred_at": "2025-01-01T00:00:00Z",
            "data": listing,
        }
    )


async def test_produce_reports_bad_lines_and_sends_the_rest(
    kafka_bootstrap: str, topic_factory, tmp_path: Path
) -> None:
    topic = await topic_factory(partitions=2)
    source = tmp_path / "events.jsonl"
    source.write_bytes(
        b"\n".join(
            [
                event_line(1),
                event_line(2, title=""),
                b"{this is not json",
                b"",
                event_line(4),
            ]
        )
        + b"\n"
    )
    code, out, err = await run_cli(
        "produce", str(source), "--topic", topic, "--bootstrap-servers", kafka_bootstrap
    )
    assert code == 1
    assert "line 2:" in err and "data.title" in err
    assert "line 3:" in err and "not valid JSON" in err
    assert "sent 2 event(s)" in out and "2 line(s) failed: 2, 3" in out
    received = await topic_values(kafka_bootstrap, topic, 2)
    assert sorted(ListingEvent.model_validate_json(v).listing_id for v in received) == [1, 4]


async def test_produce_exits_zero_when_every_line_is_good(
    kafka_bootstrap: str, topic_factory, tmp_path: Path
) -> None:
    topic = await topic_factory(partitions=1)
    source = tmp_path / "events.jsonl"
    source.write_bytes(event_line(7) + b"\n")
    code, out, _ = await run_cli(
        "produce", str(source), "--topic", topic, "--bootstrap-servers", kafka_bootstrap
    )
    assert code == 0 and "sent 1 event(s)" in out


async def test_loadgen_prints_rate_and_latency_percentiles(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = await topic_factory(partitions=3)
    code, out, err = await run_cli(
        "loadgen",
        "--count",
        "400",
        "--rate",
        "2000",
        "--json",
        "--topic",
        topic,
        "--bootstrap-servers",
        kafka_bootstrap,
        "--mix",
        "create=0.3,update=0.5,delete=0.1,thin=0.1,poison=0.05,hot_key_ratio=0.5",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["emitted"] == 400 and report["rejected"] == 0
    assert report["rate_per_s"] > 0
    assert set(report["emit_latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert report["by_kind"]["poison"] > 0
    assert "[" not in err  # stderr is not a terminal: no progress bar
    received = await topic_values(kafka_bootstrap, topic, 400)
    assert len(received) == 400
    valid = 0
    for value in received:
        with contextlib.suppress(ValidationError, ValueError):
            ListingEvent.model_validate_json(value)
            valid += 1
    assert valid == 400 - report["by_kind"]["poison"]  # poison records are really invalid
