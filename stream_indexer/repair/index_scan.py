"""Drift check, the index side: documents read by id, in id order, or at random, tombstones too.

Searches through the alias hide tombstones, and verify must see them (a tombstone is the
index's record of a delete and of its version), so reads go to the physical index(es) the
search alias points to, unfiltered. The alias normally names one index (a reindex moves it
atomically); should it name several, a listing found in more than one counts at its
newest. Every read asks for `_version`, the external version the next write is compared
with. A request that fails for a transient reason is retried under the bounded policy the
caller gives.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import NotFoundError, TransportError

from stream_indexer.backoff import RetryPolicy, retry
from stream_indexer.errors import ConfigError, SinkUnavailableError
from stream_indexer.repair.drift import IndexDoc


class IndexReader:
    """Reads the documents behind the search alias `alias` (resolve it first)."""

    def __init__(
        self, client: AsyncOpenSearch, alias: str, policy: RetryPolicy, *, page_size: int
    ) -> None:
        self._client = client
        self.alias = alias
        self._policy = policy
        self._page_size = page_size
        self.indices: list[str] = []

    async def resolve(self) -> list[str]:
        """The physical indices behind the alias; a missing alias is bad configuration."""
        try:
            answer = await self._call(lambda: self._client.indices.get_alias(name=self.alias))
        except NotFoundError:
            raise ConfigError(
                f"STREAM_INDEXER_OPENSEARCH__INDEX: no alias {self.alias!r} in the cluster "
                "(verify reads the indices the search alias points to)"
            ) from None
        self.indices = sorted(answer)
        return self.indices

    async def docs(self, listing_ids: Sequence[int]) -> dict[int, IndexDoc]:
        """The documents (live or tombstones) the index holds for `listing_ids`."""
        found: dict[int, IndexDoc] = {}
        for start in range(0, len(listing_ids), self._page_size):
            chunk = [str(i) for i in listing_ids[start : start + self._page_size]]
            body = {
                "query": {"ids": {"values": chunk}},
                "size": len(chunk) * len(self.indices),
                "version": True,
            }
            for doc in await self._search(body):
                _keep_newest(found, doc)
        return found

    async def scan(self) -> AsyncIterator[IndexDoc]:
        """Every document, in id order, one page per index in memory at a time."""
        streams = [self._scan_index(index) for index in self.indices]
        merged = _merge_by_id(streams) if len(streams) > 1 else streams[0]
        async for doc in merged:
            yield doc

    async def random_live(self, n: int) -> list[IndexDoc]:
        """About `n` live documents (tombstones excluded), chosen at random by the cluster."""
        body = {
            "size": n,
            "version": True,
            "query": {
                "function_score": {
                    "query": {"bool": {"must_not": [{"term": {"deleted": True}}]}},
                    "random_score": {},
                    "boost_mode": "replace",
                }
            },
        }
        return await self._search(body)

    async def _scan_index(self, index: str) -> AsyncIterator[IndexDoc]:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": self._page_size,
                "sort": [{"id": "asc"}],
                "version": True,
                "query": {"match_all": {}},
            }
            if after is not None:
                body["search_after"] = after
            hits = await self._hits(index, body)
            for hit in hits:
                yield _doc(hit)
            if len(hits) < self._page_size:
                return
            after = hits[-1]["sort"]

    async def _search(self, body: dict[str, Any]) -> list[IndexDoc]:
        return [_doc(hit) for hit in await self._hits(",".join(self.indices), body)]

    async def _hits(self, index: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self._call(lambda: self._client.search(index=index, body=body))
        hits: list[dict[str, Any]] = answer["hits"]["hits"]
        return hits

    async def _call(self, request: Any) -> Any:
        async def once() -> Any:
            try:
                return await request()
            except NotFoundError:
                raise
            except OSConnectionError as exc:
                raise SinkUnavailableError(f"OpenSearch unreachable: {type(exc).__name__}") from exc
            except TransportError as exc:
                if (
                    isinstance(exc.status_code, int)
                    and exc.status_code < 500
                    and (exc.status_code != 429)
                ):
                    raise
                raise SinkUnavailableError(
                    f"OpenSearch answered HTTP {exc.status_code}: {exc.error}"
                ) from exc

        return await retry(once, self._policy)


def _doc(hit: dict[str, Any]) -> IndexDoc:
    source: dict[str, Any] = hit.get("_source") or {}
    version = hit.get("_version")
    if not isinstance(version, int):
        stored = source.get("version")
        version = stored if isinstance(stored, int) else 0
    return IndexDoc(int(hit["_id"]), version, source)


def _keep_newest(found: dict[int, IndexDoc], doc: IndexDoc) -> None:
    held = found.get(doc.listing_id)
    if held is None or doc.version > held.version:
        found[doc.listing_id] = doc


async def _merge_by_id(streams: list[AsyncIterator[IndexDoc]]) -> AsyncIterator[IndexDoc]:
    """One id-ordered stream from several, a listing in more than one at its newest."""
    heap: list[tuple[int, int, IndexDoc]] = []
    for number, stream in enumerate(streams):
        first = await anext(stream, None)
        if first is not None:
            heap.append((first.listing_id, number, first))
    heapq.heapify(heap)
    pending: IndexDoc | None = None
    while heap:
        _id, number, doc = heapq.heappop(heap)
        following = await anext(streams[number], None)
        if following is not None:
            heapq.heappush(heap, (following.listing_id, number, following))
        if pending is not None and pending.listing_id == doc.listing_id:
            pending = doc if doc.version > pending.version else pending
            continue
        if pending is not None:
            yield pending
        pending = doc
    if pending is not None:
        yield pending


__all__ = ["IndexReader"]
