"""Benchmark check: an osmem index against the plan, listing by listing.

After a consumer has drained a backlog, every planned listing must hold its newest version,
deleted or not (a tombstone document), whatever order the events arrived in. Used by the
end-to-end step and by the other consumers' runs (bench/external_baselines.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from bench import osadmin
from stream_indexer.devtools.demo import DemoPlan


async def index_check(url: str, index: str, plan: DemoPlan) -> dict[str, Any]:
    """Every listing of the plan against its document: newest version, deleted or not.
    `extra` counts documents of no planned listing (poison a consumer did not refuse)."""
    seen: dict[int, tuple[int, bool]] = {}
    query: dict[str, Any] = {
        "size": 5000,
        "sort": [{"id": "asc"}],
        "_source": ["id", "version", "deleted"],
        "query": {"match_all": {}},
    }
    async with osadmin.session() as http:
        while True:
            async with http.post(
                f"{url}/{index}/_search", data=orjson.dumps(query), headers=osadmin.JSON
            ) as r:
                hits = orjson.loads(await r.read())["hits"]["hits"]
            for hit in hits:
                source = hit["_source"]
                seen[int(hit["_id"])] = (int(source["version"]), bool(source.get("deleted")))
            if len(hits) < query["size"]:
                break
            query["search_after"] = hits[-1]["sort"]
    stale = missing = 0
    for listing, version in plan.expected_versions.items():
        found = seen.get(listing)
        if found is None:
            missing += 1
        elif found != (version, plan.expected[listing] is None):
            stale += 1
    extra = sum(1 for listing in seen if listing not in plan.expected_versions)
    return {
        "documents": len(seen),
        "expected": len(plan.expected_versions),
        "stale": stale,
        "missing": missing,
        "extra": extra,
        "ok": stale == 0 and missing == 0,
    }
