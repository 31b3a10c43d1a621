"""Benchmark, producer side: how long `emit_index` keeps the caller waiting.

Measures p50/p99 of `ListingEventProducer.emit_index` at fixed target rates (by default
1,000 and 10,000 events/s) and, in the same run, the latency of the synchronous OpenSearch
single-document index call the old system made inside its API requests. Events are generated
before the timed loop, so only the emit call is measured. Used by `make bench`; run alone with

    python -m bench.emit_latency --bootstrap 127.0.0.1:9092 --opensearch-url http://127.0.0.1:9200
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import uuid
from typing import Any

from opensearchpy import OpenSearch

from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.loadgen import EventGenerator, LoadMix, percentile, run_load
from stream_indexer.producer import ListingEventProducer
from stream_indexer.settings import load_settings

INDEX_ONLY = LoadMix(create=0.3, update=0.7, stale=0, delete=0, thin=0)
WARMUP_EVENTS = 500


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


async def measure_emit_latency(
    bootstrap: str,
    opensearch_url: str,
    rates: tuple[int, ...] = (1000, 10000),
    seconds: float = 5.0,
    *,
    opensearch_calls: int = 300,
    enable_idempotence: bool = False,
) -> dict[str, Any]:
    """Emit-latency percentiles per target rate, and the sync OpenSearch index latency.

    `enable_idempotence` stays off by default because the local tansu broker rejects
    aiokafka's idempotent producer; turn it on against real Kafka.
    """
    topic = f"bench-emit-{uuid.uuid4().hex[:8]}"
    await ensure_topic(bootstrap, topic, partitions=6)
    settings = load_settings(
        {
            "kafka.bootstrap_servers": bootstrap,
            "kafka.topic": topic,
            "producer.enable_idempotence": enable_idempotence,
        }
    )
    generator = EventGenerator(INDEX_ONLY, seed=42)
    results: dict[str, Any] = {"topic": topic, "seconds_per_rate": seconds, "emit_index": {}}
    async with ListingEventProducer(settings) as producer:
        await run_load(producer, generator.take(WARMUP_EVENTS), rate=None)
        for rate in rates:
            ops = generator.take(int(rate * seconds))
            gc.collect()
            gc.freeze()  # the pre-generated events are not what we measure: keep GC off them
            report = await run_load(producer, ops, rate=rate)
            del ops
            gc.unfreeze()
            results["emit_index"][str(rate)] = {
                "target_rate": rate,
                "achieved_rate": round(report.rate, 1),
                "events": report.emitted,
                "rejected": report.rejected,
                "p50_ms": _ms(report.percentile(50)),
                "p99_ms": _ms(report.percentile(99)),
                "max_ms": _ms(report.percentile(100)),
            }
    results["opensearch_sync_index"] = _opensearch_index_latency(
        opensearch_url, generator, opensearch_calls
    )
    return results


def _opensearch_index_latency(url: str, generator: EventGenerator, calls: int) -> dict[str, Any]:
    """What the old API did per change: one blocking single-document index request."""
    client = OpenSearch(hosts=[url], timeout=30)
    index = f"bench-sync-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index)
    latencies: list[float] = []
    try:
        for i in range(calls):
            doc = generator.listing(1_000_000 + i)
            start = time.perf_counter()
            client.index(index=index, id=str(doc["id"]), body=doc)
            latencies.append(time.perf_counter() - start)
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
        client.close()
    return {
        "calls": calls,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(percentile(latencies, 100)),
    }


def main() -> None:
    defaults = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=defaults.kafka.bootstrap_servers)
    parser.add_argument("--opensearch-url", default=defaults.opensearch.hosts[0])
    parser.add_argument("--rates", default="1000,10000", help="comma-separated events/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration per rate")
    parser.add_argument("--idempotence", action="store_true", help="idempotent producer")
    args = parser.parse_args()
    rates = tuple(int(r) for r in args.rates.split(","))
    result = asyncio.run(
        measure_emit_latency(
            args.bootstrap,
            args.opensearch_url,
            rates,
            args.seconds,
            enable_idempotence=args.idempotence,
        )
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
