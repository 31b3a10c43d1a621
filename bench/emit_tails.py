"""Benchmark, producer side: what the slowest `emit_index_nowait` calls were spent on.

A paced run like `loadgen.run_load`, except that each call is timed twice: by the wall clock
and by the calling thread's CPU clock (`time.thread_time`), while `gc.callbacks` record every
collection. A call slower than a threshold is then put down to one cause:

- **garbage collection**: a collection ran inside the call (its generation is counted);
- **descheduled**: the thread had the CPU for less than half of the call's wall time: the
  OS ran something else (on a 2-core machine with an indexer and a broker, often);
- **own code**: neither; the call itself took that long on the CPU.

The two clock reads add about a microsecond to each call, so this run is a diagnosis and its
percentiles are not the ones compared with the targets. Used by `bench/emit_latency.py`.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from typing import Any

from stream_indexer.devtools.loadgen import Op, percentile
from stream_indexer.producer import ListingEventProducer, ProducerBackpressureError

#: calls slower than these (ms) are explained: the p99 and p99.9 targets
THRESHOLDS_MS = (0.1, 1.0)


async def explain_slow_calls(
    producer: ListingEventProducer, ops: list[Op], rate: float
) -> dict[str, Any]:
    """Emit `ops` at `rate`/s; count the calls over each threshold by cause."""
    perf, cpu = time.perf_counter, time.thread_time
    collections: list[tuple[float, float, int]] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(perf())
        elif started:
            collections.append((started.pop(), perf(), info["generation"]))

    calls: list[tuple[float, float, float]] = []  # (start, wall, cpu) per call
    rejected = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    gc.callbacks.append(on_gc)
    try:
        start = perf()
        interval = 1.0 / rate
        for i, op in enumerate(ops):
            ahead = start + i * interval - perf()
            if ahead > 0.0005:
                await asyncio.sleep(ahead)
            assert op.listing is not None
            t0, c0 = perf(), cpu()
            try:
                producer.emit_index_nowait(op.listing, op.version)
            except ProducerBackpressureError:
                rejected += 1
                continue
            c1, t1 = cpu(), perf()
            calls.append((t0, t1 - t0, c1 - c0))
        elapsed = perf() - start
    finally:
        gc.callbacks.remove(on_gc)
    after = resource.getrusage(resource.RUSAGE_SELF)
    await producer.flush()
    out: dict[str, Any] = {
        "events": len(calls),
        "rejected": rejected,
        "achieved_rate": round(len(calls) / elapsed, 1),
        "caller_p99_ms": round(percentile([w for _, w, _ in calls], 99) * 1000, 4),
        "caller_p999_ms": round(percentile([w for _, w, _ in calls], 99.9) * 1000, 4),
        "involuntary_context_switches": after.ru_nivcsw - before.ru_nivcsw,
        "collections_by_generation": [sum(1 for *_, g in collections if g == n) for n in range(3)],
        "longest_collection_ms_by_generation": [
            round(max((b - a for a, b, g in collections if g == n), default=0.0) * 1000, 3)
            for n in range(3)
        ],
    }
    for threshold_ms in THRESHOLDS_MS:
        out[f"slower_than_{threshold_ms:g}_ms"] = _causes(calls, collections, threshold_ms / 1000)
    return out


def _causes(
    calls: list[tuple[float, float, float]],
    collections: list[tuple[float, float, int]],
    threshold_s: float,
) -> dict[str, int]:
    counts = {"total": 0, "gc_gen0": 0, "gc_gen1": 0, "gc_gen2": 0, "descheduled": 0, "own_code": 0}
    for t0, wall, on_cpu in calls:
        if wall <= threshold_s:
            continue
        counts["total"] += 1
        generation = next((g for a, b, g in collections if t0 <= a and b <= t0 + wall), None)
        if generation is not None:
            counts[f"gc_gen{generation}"] += 1
        elif on_cpu < wall / 2:
            counts["descheduled"] += 1
        else:
            counts["own_code"] += 1
    return counts


__all__ = ["THRESHOLDS_MS", "explain_slow_calls"]
