"""Benchmark, producer side: CPU per event of validating and serializing an emitted event.

The same listings go through the models' path (`index_event` + `encode_value`: pydantic
model instances, `model_dump_json`) and through the fast path `emit_*_nowait` takes
(`index_event_dict` + `encode_event_dict`: the validator compiled from the models, orjson;
the caller validates, the sender encodes),
in alternating rounds, timed by the thread's CPU clock (so time the OS gave to other
processes does not count). "warm" calls follow each other; "cold" calls are a millisecond
apart, with the event loop sleeping in between, as an API handler emitting now and then runs
(other processes evict the caches meanwhile). Used by `bench/emit_latency.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from stream_indexer.devtools.loadgen import EventGenerator, Op, percentile
from stream_indexer.event_dicts import encode_event_dict
from stream_indexer.producer.events import encode_value, index_event, index_event_dict

ROUNDS = 3
COLD_PAUSE_S = 0.001


def _models(op: Op) -> bytes:
    assert op.listing is not None
    return encode_value(index_event(op.listing, op.version))


def _fast(op: Op) -> bytes:
    assert op.listing is not None
    return encode_event_dict(index_event_dict(op.listing, op.version))


async def _per_call_us(build: Callable[[Op], bytes], ops: list[Op], pause_s: float) -> list[float]:
    cpu = time.thread_time
    out = []
    for op in ops:
        if pause_s:
            await asyncio.sleep(pause_s)
        c0 = cpu()
        build(op)
        out.append((cpu() - c0) * 1e6)
    return out


async def measure_call_cost(
    generator: EventGenerator, warm_calls: int = 5000, cold_calls: int = 500
) -> dict[str, Any]:
    """Median and p99 CPU µs per event, both paths, warm and cold; and the ratio."""
    out: dict[str, Any] = {}
    for label, calls, pause in (("warm", warm_calls, 0.0), ("cold", cold_calls, COLD_PAUSE_S)):
        samples: dict[str, list[float]] = {"models": [], "fast": []}
        for _ in range(ROUNDS):
            ops = generator.take(calls)
            for name, build in (("models", _models), ("fast", _fast)):
                samples[name] += await _per_call_us(build, ops, pause)
        for name, values in samples.items():
            out[f"{label}_{name}_p50_us"] = round(percentile(values, 50), 2)
            out[f"{label}_{name}_p99_us"] = round(percentile(values, 99), 2)
        out[f"{label}_fast_over_models_p50"] = round(
            out[f"{label}_fast_p50_us"] / out[f"{label}_models_p50_us"], 2
        )
    return out


__all__ = ["measure_call_cost"]
