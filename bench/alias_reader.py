"""Reindex figure: the cutover pause readers see (there should be none).

A reader searches the live alias in a loop (one search at a time, `size` 1, a short pause
between searches) and records, for each search, when it started, how long it took, which
physical index answered (`_index` of the hit) and whether it failed. The switch is the
moment the answering index changes: between the last search the old index answered and the
first one the new index answered. The figure: max and p99 latency of the searches that
started within `AROUND_S` of the switch, against the same reader's latency before the reindex
(a window of the live stream alone) and during the reindex before the switch, and the errors
(HTTP status >= 300 or a connection failure) over the whole window.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

#: seconds between two searches: about 30 searches a second with a fast answer
PAUSE_S = 0.02
#: searches that started this close to the switch are "around" it
AROUND_S = 1.0
_BODY = orjson.dumps({"size": 1, "query": {"match_all": {}}, "_source": False})
_JSON = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class Search:
    """One search: started (monotonic s), took (s), the index that answered, failed."""

    at: float
    took_s: float
    index: str | None
    error: bool


class AliasReader:
    """`await reader.run(stop)` searches `alias` until `stop` is set; `searches` holds them."""

    def __init__(self, url: str, alias: str) -> None:
        self.url = f"{url}/{alias}/_search"
        self.searches: list[Search] = []

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                self.searches.append(await self._search(http))
                await asyncio.sleep(PAUSE_S)

    async def _search(self, http: aiohttp.ClientSession) -> Search:
        started = time.monotonic()
        try:
            async with http.post(self.url, data=_BODY, headers=_JSON) as response:
                body = await response.read()
                took = time.monotonic() - started
                if response.status >= 300:
                    return Search(started, took, None, True)
        except (aiohttp.ClientError, TimeoutError):
            return Search(started, time.monotonic() - started, None, True)
        hits = orjson.loads(body).get("hits", {}).get("hits", [])
        return Search(started, took, hits[0]["_index"] if hits else None, False)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values): exact samples, no buckets."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def _latencies(searches: list[Search]) -> dict[str, Any]:
    took = [s.took_s for s in searches if not s.error]
    p50, p99 = percentile(took, 0.5), percentile(took, 0.99)
    return {
        "searches": len(searches),
        "errors": sum(s.error for s in searches),
        "p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
        "max_ms": round(max(took) * 1000, 1) if took else None,
    }


def cutover_pause(
    before: list[Search], during: list[Search], new_index: str, *, around_s: float = AROUND_S
) -> dict[str, Any]:
    """The reader's figures: before the reindex, during it before the switch, around the
    switch (see the module doc); `switched` False when the new index never answered."""
    first_new = next((i for i, s in enumerate(during) if s.index == new_index), None)
    out: dict[str, Any] = {
        "before_reindex": _latencies(before),
        "errors": sum(s.error for s in during),
        "switched": first_new is not None,
    }
    if first_new is None:
        out["during_reindex"] = _latencies(during)
        return out
    answered_old = [s for s in during[:first_new] if not s.error]
    switch_at = (answered_old[-1].at if answered_old else during[first_new].at) + (
        (during[first_new].at - answered_old[-1].at) / 2 if answered_old else 0.0
    )
    out["during_reindex"] = _latencies(during[:first_new])
    # within `around_s` of the switch, and always the two searches on either side of it
    # (one slow search can span more than `around_s`)
    bracket = {id(during[first_new])} | ({id(answered_old[-1])} if answered_old else set())
    around = [s for s in during if abs(s.at - switch_at) <= around_s or id(s) in bracket]
    out["around_switch"] = _latencies(around)
    out["around_s"] = around_s
    # the longest time a reader went without an answer across the switch
    ends = [s.at + s.took_s for s in around if not s.error]
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    out["longest_gap_ms"] = round(max(gaps) * 1000, 1) if gaps else None
    return out


def readers_summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over several reindexes: errors added up, the worst search around a switch, the
    worst p99 before a reindex, and how many switches the reader saw."""

    def worst(part: str, key: str) -> float | None:
        values = [p[part][key] for p in pairs if p.get(part) and p[part][key] is not None]
        return max(values) if values else None

    return {
        "errors": sum(p["errors"] for p in pairs),
        "switches_seen": sum(p["switched"] for p in pairs),
        "reindexes": len(pairs),
        "before_p99_ms": worst("before_reindex", "p99_ms"),
        "during_p99_ms": worst("during_reindex", "p99_ms"),
        "around_p99_ms": worst("around_switch", "p99_ms"),
        "around_max_ms": worst("around_switch", "max_ms"),
    }


__all__ = ["AliasReader", "Search", "cutover_pause", "percentile", "readers_summary"]
