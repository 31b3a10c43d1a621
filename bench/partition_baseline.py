"""Benchmark baseline: the strongest simple consumer, one `_bulk` per fetched partition batch.

`python -m bench.partition_baseline` runs in its own process (so its CPU is its own): an
aiokafka group consumer whose every `getmany()` partition batch becomes one `_bulk` (orjson,
`version_type=external_gte`, the listing as `_source` plus the event's version, id and
time) followed by one commit, the shape of a kafkajs `eachBatch` consumer. It parses JSON
but does not validate the contract; records that are not an event object are skipped.

With `--validate` it also does the one thing the contract requires of every consumer: each
value is validated by the indexer's own hot-path validator (`SPARSE_EVENT_DICT_VALIDATOR`,
the models compiled to dicts) instead of parsed by orjson, and invalid records are skipped
(counted, not dead-lettered). That is the cheapest consumer doing the indexer's job minus
coalescing, dead letters, retries, offset tracking and metrics, so the indexer's gap to it
is what the pipeline itself costs.

With `--processes N` the validation (and the body) of each partition batch runs in a pool of
N worker processes, every partition of a `getmany()` at once, and the batches' offsets are
committed together once all are written: what a validating consumer gains by spreading the
validator over the machine's cores. Its CPU is that of all its processes.

It prints one JSON line: records, events/s, documents and requests sent, and CPU µs/event
from its first fetch until every record is committed, and CPU over its whole life.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from pydantic_core import ValidationError

from bench.procstat import read_proc
from stream_indexer.event_dicts import SPARSE_EVENT_DICT_VALIDATOR
from stream_indexer.opensearch.mapping import tombstone_document
from stream_indexer.pipeline.event_dict import listing_document

_NDJSON = {"Content-Type": "application/x-ndjson"}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu_s() -> float:
    """CPU of this process's live multiprocessing children (the pool's workers)."""
    return sum(read_proc(child.pid)[0] for child in multiprocessing.active_children() if child.pid)


def _whole_life_cpu_s() -> float:
    """This process's CPU and that of its children that have exited (the pool, shut down)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return _cpu_s() + children.ru_utime + children.ru_stime


def _peak_rss_mib() -> float:
    """VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's RSS at fork."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def validated_bulk_body(values: list[bytes | None], indexed_at: str) -> tuple[bytes, int, int]:
    """One action (+ source) per event that the contract accepts; (body, items, invalid)."""
    validate = SPARSE_EVENT_DICT_VALIDATOR.validate_json
    lines: list[bytes] = []
    invalid = 0
    for value in values:
        try:
            event = validate(value) if value is not None else None
        except ValidationError:
            event = None
        if event is None:
            invalid += 1
            continue
        lines.append(
            b'{"index":{"_id":"%d","version":%d,"version_type":"external_gte"}}'
            % (event["listing_id"], event["version"])
        )
        data = event.get("data")
        if event["action"] == "delete" or data is None:  # (a thin event too: no source here)
            document = tombstone_document(
                event["listing_id"], event["version"], str(event["event_id"]), indexed_at
            )
        else:
            document = listing_document(data)
            document["version"] = event["version"]
            document["event_id"] = event["event_id"]
            document["indexed_at"] = indexed_at
        lines.append(orjson.dumps(document))
    return b"\n".join(lines) + b"\n", len(lines) // 2, invalid


def bulk_body(index: str, values: list[bytes | None], indexed_at: str) -> tuple[bytes, int]:
    """One action (+ source) per event in the batch; (body, items)."""
    lines: list[bytes] = []
    for value in values:
        try:
            event = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict) or "listing_id" not in event or "version" not in event:
            continue
        meta = {
            "_index": index,
            "_id": str(event["listing_id"]),
            "version": event["version"],
            "version_type": "external_gte",
        }
        data = event.get("data")
        if event.get("action") == "delete" or not isinstance(data, dict):
            lines.append(orjson.dumps({"delete": meta}))
            continue
        data["version"] = event["version"]
        data["event_id"] = event.get("event_id")
        data["indexed_at"] = indexed_at
        lines.append(orjson.dumps({"index": meta}))
        lines.append(orjson.dumps(data))
    items = sum(1 for line in lines if line.startswith((b'{"index"', b'{"delete"')))
    return b"\n".join(lines) + b"\n", items


async def _post(http: aiohttp.ClientSession, url: str, body: bytes) -> None:
    async with http.post(url, data=body, headers=_NDJSON) as response:
        answer = orjson.loads(await response.read())
    if response.status != 200 or answer.get("errors"):
        raise RuntimeError(f"bulk failed: HTTP {response.status}")


#: makes one partition batch's body: (values, indexed_at) -> (body, items, invalid)
BodyMaker = Callable[[list[bytes | None], str], Awaitable[tuple[bytes, int, int]]]


def _body_maker(index: str, validate: bool, pool: ProcessPoolExecutor | None) -> BodyMaker:
    async def in_pool(values: list[bytes | None], indexed_at: str) -> tuple[bytes, int, int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, validated_bulk_body, values, indexed_at)

    async def here(values: list[bytes | None], indexed_at: str) -> tuple[bytes, int, int]:
        if validate:
            return validated_bulk_body(values, indexed_at)
        return (*bulk_body(index, values, indexed_at), 0)

    return in_pool if pool is not None else here


async def run(
    bootstrap: str,
    topic: str,
    group_id: str,
    url: str,
    index: str,
    total: int,
    *,
    validate: bool,
    processes: int = 0,
) -> Any:
    # the pool's workers are forked before the consumer starts anything
    pool = ProcessPoolExecutor(max_workers=processes) if processes else None
    if pool is not None:
        await asyncio.gather(
            *(asyncio.get_running_loop().run_in_executor(pool, os.getpid) for _ in range(4))
        )
    make_body = _body_maker(index, validate, pool)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
    )
    await consumer.start()
    done = documents = requests = invalid = 0
    started = cpu_started = 0.0
    bulk_url = f"{url}/{index}/_bulk"

    try:
        async with aiohttp.ClientSession() as http:

            async def write(records: list[Any]) -> None:
                nonlocal documents, requests, invalid
                body, items, refused = await make_body(
                    [r.value for r in records], datetime.now(UTC).isoformat()
                )
                invalid += refused
                if items:
                    await _post(http, bulk_url, body)
                    documents += items
                    requests += 1

            while done < total:
                batches = await consumer.getmany(timeout_ms=500)
                if batches and not started:
                    started, cpu_started = time.perf_counter(), _cpu_s() + _children_cpu_s()
                if pool is not None:  # every partition's batch at once, then one commit
                    await asyncio.gather(*(write(records) for records in batches.values()))
                    if batches:
                        await consumer.commit(
                            {tp: records[-1].offset + 1 for tp, records in batches.items()}
                        )
                        done += sum(len(records) for records in batches.values())
                    continue
                for tp, records in batches.items():
                    await write(records)
                    await consumer.commit({tp: records[-1].offset + 1})
                    done += len(records)
            seconds = time.perf_counter() - started
            cpu = _cpu_s() + _children_cpu_s() - cpu_started
    finally:
        await consumer.stop()
        if pool is not None:
            pool.shutdown()
    return {
        "records": done,
        "processes": processes,
        "seconds": round(seconds, 3),
        "events_per_s": round(done / seconds, 1),
        "documents_sent": documents,
        "invalid_skipped": invalid,
        "bulk_requests": requests,
        "cpu_window_us_per_event": round(cpu * 1e6 / max(1, done), 2),
        "cpu_us_per_event": round(_whole_life_cpu_s() * 1e6 / max(1, done), 2),
        "max_rss_mib": _peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.partition_baseline")
    for name in ("bootstrap", "topic", "group-id", "url", "index"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument(
        "--validate", action="store_true", help="validate each value against the contract"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="validate (implies --validate) in a pool of this many worker processes",
    )
    a = parser.parse_args(argv)
    result = asyncio.run(
        run(
            a.bootstrap,
            a.topic,
            a.group_id,
            a.url,
            a.index,
            a.records,
            validate=a.validate or a.processes > 0,
            processes=a.processes,
        )
    )
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
