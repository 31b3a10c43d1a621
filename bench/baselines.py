"""Baselines: the designs the indexer is measured against, kept minimal on purpose.

- naive: one index request and one offset commit per record, strictly in sequence;
- old design (the replaced system): a consumer loop feeding a bounded `asyncio.Queue`
  drained by 5 workers, one single-document index request per record, auto-commit.

Both decode and build documents with the indexer's own code and write with the same
external_gte versions, so only the transport design differs. Both run on a small backlog
(per-record requests are slow) and report events/s from their first record to their last.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bench import osadmin
from bench.workload import ProducedTopic, decode_or_none, event_document

OLD_WORKERS = 5
OLD_QUEUE_SIZE = 1_000


async def index_one(http: aiohttp.ClientSession, url: str, index: str, record: Any) -> None:
    """One record, one request: PUT the document with its external version (409 = stale)."""
    event = decode_or_none(record.key, record.value)
    if event is None:
        return  # poison: the old systems logged and dropped it
    document = event_document(event, datetime.now(UTC).isoformat())
    target = (
        f"{url}/{index}/_doc/{event.listing_id}?version={event.version}&version_type=external_gte"
    )
    async with http.put(target, data=orjson.dumps(document), headers=osadmin.JSON) as response:
        await response.read()
        if response.status >= 300 and response.status != 409:
            raise RuntimeError(f"index request failed: HTTP {response.status}")


def _consumer(bootstrap: str, group_id: str, *, auto_commit: bool) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=auto_commit,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
    )


async def naive(
    bootstrap: str, opensearch_url: str, topic: ProducedTopic, *, group_id: str, index: str
) -> dict[str, Any]:
    """Fetch one record, index it, commit it, repeat."""
    consumer = _consumer(bootstrap, group_id, auto_commit=False)
    async with osadmin.session() as http:
        await osadmin.create_index(http, opensearch_url, index)
        await consumer.start()
        try:
            consumer.subscribe([topic.name])
            done = 0
            started: float | None = None
            while done < topic.records:
                record: ConsumerRecord[bytes, bytes] = await consumer.getone()
                started = started or time.perf_counter()
                await index_one(http, opensearch_url, index, record)
                tp = TopicPartition(record.topic, record.partition)
                await consumer.commit({tp: record.offset + 1})
                done += 1
            assert started is not None
            seconds = time.perf_counter() - started
        finally:
            await consumer.stop()
            await osadmin.delete_index(http, opensearch_url, index)
    return _result(done, seconds)


async def old_design(
    bootstrap: str, opensearch_url: str, topic: ProducedTopic, *, group_id: str, index: str
) -> dict[str, Any]:
    """Consumer -> bounded queue -> 5 workers, one index request per record, auto-commit."""
    consumer = _consumer(bootstrap, group_id, auto_commit=True)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=OLD_QUEUE_SIZE)
    done = 0
    all_done = asyncio.Event()

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while True:
            record = await queue.get()
            await index_one(http, opensearch_url, index, record)
            queue.task_done()
            done += 1
            if done >= topic.records:
                all_done.set()

    async def fetcher() -> None:
        while True:
            record = await consumer.getone()
            await queue.put(record)

    async with osadmin.session() as http:
        await osadmin.create_index(http, opensearch_url, index)
        await consumer.start()
        try:
            consumer.subscribe([topic.name])
            # the clock starts at the first record, as for the naive baseline
            first = await consumer.getone()
            started = time.perf_counter()
            await queue.put(first)
            tasks = [asyncio.create_task(worker(http)) for _ in range(OLD_WORKERS)]
            tasks.append(asyncio.create_task(fetcher()))
            finished = asyncio.create_task(all_done.wait())
            await asyncio.wait([finished, *tasks], return_when=asyncio.FIRST_COMPLETED)
            seconds = time.perf_counter() - started
            for task in [finished, *tasks]:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            failure = next((o for o in outcomes if not isinstance(o, asyncio.CancelledError)), None)
            if isinstance(failure, BaseException):
                raise failure
        finally:
            await consumer.stop()
            await osadmin.delete_index(http, opensearch_url, index)
    return _result(done, seconds)


def _result(done: int, seconds: float) -> dict[str, Any]:
    return {"records": done, "seconds": round(seconds, 3), "events_per_s": round(done / seconds, 1)}
