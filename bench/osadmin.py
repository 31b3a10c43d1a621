"""Benchmark plumbing: the few OpenSearch admin calls the measurements need (aiohttp, no
client library in the measured path)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from stream_indexer.opensearch.mapping import index_body

JSON = {"content-type": "application/json"}
#: big bulks on osmem can take over 10 s; a timeout must never decide a measurement
TIMEOUT = aiohttp.ClientTimeout(total=300)


def session(connections: int = 16) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)


async def create_index(http: aiohttp.ClientSession, url: str, index: str) -> None:
    """A fresh index with the project's real settings and strict mapping."""
    async with http.put(f"{url}/{index}", data=orjson.dumps(index_body()), headers=JSON) as r:
        if r.status >= 300:
            raise RuntimeError(f"creating {index}: HTTP {r.status} {await r.text()}")


async def delete_index(http: aiohttp.ClientSession, url: str, index: str) -> None:
    """Drop an index once measured: osmem keeps everything in memory."""
    async with http.delete(f"{url}/{index}") as r:
        await r.read()


async def count(http: aiohttp.ClientSession, url: str, index: str) -> int:
    async with http.get(f"{url}/{index}/_count") as r:
        body: dict[str, Any] = orjson.loads(await r.read())
    return int(body.get("count", -1))


async def server_version(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as r:
        body: dict[str, Any] = orjson.loads(await r.read())
    return str(body.get("version", {}).get("number", "?"))
