"""Test support: a scripted fake OpenSearch endpoint for the sink's `_bulk` failure paths.

The local OpenSearch (osmem) never answers 429 or 5xx and never rejects single items for
load, so tests of the retry policy and circuit breaker script those answers here. The fake
speaks the HTTP calls `stream_indexer.opensearch.sink.OpenSearchSink` makes (opensearch-py):

    GET|HEAD /                       cluster info (ping)
    HEAD /{index}                    index (or alias) exists
    GET|HEAD [/{index}]/_alias/{a}   alias exists / where it points
    PUT /{index}                     create index (400 resource_already_exists_exception)
    POST /_aliases                   add / remove alias actions
    POST|PUT [/{index}]/_bulk        scripted, see below

Each bulk request consumes one step of the script:
- `WholeFailure(429)` (or 500/502/503/504...): the whole request fails with an
  OpenSearch-style error body; nothing is written.
- a list of per-item specs, applied by position: `None` (process normally), a status
  (`201`, `409`, `400`, `429`, `503`...), an error type (`"mapper_parsing_exception"`), a
  `(status, error_type)` pair or an `ItemResponse`. Items past the end of the list are
  processed normally.
- a callable `(request_no, item_no, doc_id, action, source) -> spec` for every item.
When the script runs out, `default` applies (normal processing unless set).

`latency_per_item_s` makes every bulk answer that much later per item (a slow cluster,
for tests of request shaping); 0 by default.

"Normal processing" is an in-memory document store honouring `version_type` (`external_gte`,
`external`, internal), so a stale version gets a real 409. A scripted 2xx stores the
document as sent; a scripted error stores nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from stream_indexer.observability.aiohttp_site import AiohttpSite
from support.fake_bulk_script import (
    ITEM_ERROR_TYPES,
    REASONS,
    WHOLE_ERROR_TYPES,
    ItemResponse,
    ItemRule,
    ItemSpec,
    Step,
    WholeFailure,
    error_body,
    item_error,
    parse_ndjson,
    spec_for,
)

__all__ = [
    "BulkRequest",
    "FakeBulk",
    "ItemResponse",
    "ItemRule",
    "ItemSpec",
    "Step",
    "StoredDocument",
    "WholeFailure",
]

MAX_BODY_BYTES = 100 * 1024 * 1024
VERSION_NUMBER = "2.19.0"


@dataclass(slots=True)
class StoredDocument:
    source: dict[str, Any]
    version: int
    seq_no: int


@dataclass(slots=True)
class BulkRequest:
    """One `_bulk` request as received and what the fake answered."""

    #: the index in the URL (None for `POST /_bulk`)
    index: str | None
    #: (action line, source line) pairs in order; the source is None for deletes
    items: list[tuple[dict[str, Any], dict[str, Any] | None]]
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str | None]:
        """The `_id` of every item, in order."""
        return [_meta(action).get("_id") for action, _ in self.items]

    @property
    def item_statuses(self) -> list[int]:
        """The status answered for every item (empty for a whole-request failure)."""
        items = self.response.get("items", [])
        return [next(iter(item.values()))["status"] for item in items]


@dataclass(slots=True)
class _Index:
    body: dict[str, Any]
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)


def _meta(action: dict[str, Any]) -> dict[str, Any]:
    value: Any = next(iter(action.values()), {})
    return value if isinstance(value, dict) else {}


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


class FakeBulk:
    """A scripted OpenSearch HTTP endpoint on 127.0.0.1 (random port); see the module doc."""

    def __init__(self, *, cluster_name: str = "fake-bulk") -> None:
        self.cluster_name = cluster_name
        #: every bulk request, in arrival order (request_no is the position here)
        self.requests: list[BulkRequest] = []
        #: live documents: index -> _id -> document
        self.documents: dict[str, dict[str, StoredDocument]] = {}
        #: every request (method, path), bulk included
        self.calls: list[tuple[str, str]] = []
        self.indices: dict[str, _Index] = {}
        self._tombstones: dict[str, dict[str, int]] = {}
        self._steps: list[Step] = []
        self._default: Step | None = None
        self._fail_all: WholeFailure | None = None
        self._seq = itertools.count()
        self._auto_ids = itertools.count(1)
        self._request_waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: seconds each bulk answer is delayed per item it carries
        self.latency_per_item_s = 0.0
        self._site = AiohttpSite("127.0.0.1", 0, shutdown_timeout=1.0)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._site.running:
            raise RuntimeError("FakeBulk is not started")
        return self._site.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self._site.running:
            return
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._middleware])
        app.router.add_get("/", self._info)
        app.router.add_route("POST", "/_aliases", self._update_aliases)
        app.router.add_get("/_alias/{name}", self._get_alias)
        app.router.add_route("POST", "/_bulk", self._bulk)
        app.router.add_route("PUT", "/_bulk", self._bulk)
        app.router.add_get("/{index}/_alias/{name}", self._get_alias)
        app.router.add_route("POST", "/{index}/_bulk", self._bulk)
        app.router.add_route("PUT", "/{index}/_bulk", self._bulk)
        app.router.add_route("HEAD", "/{index}", self._index_exists)
        app.router.add_route("PUT", "/{index}", self._create_index)
        await self._site.start(app)

    async def stop(self) -> None:
        """Close the server and its connections; safe to call more than once."""
        await self._site.stop()
        for _, future in self._request_waiters:
            future.cancel()
        self._request_waiters.clear()

    async def __aenter__(self) -> FakeBulk:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- scripting --------------------------------------------------------------------------

    def script(self, *steps: Step, default: Step | None = None) -> None:
        """Replace the pending script: one step per coming bulk request, then `default`."""
        for step in (*steps, default):
            if isinstance(step, str | bytes):
                raise TypeError("a step is a WholeFailure, a callable or a list of item specs")
        self._steps = list(steps)
        self._default = default

    @property
    def steps_left(self) -> int:
        return len(self._steps)

    def fail_all(self, failure: WholeFailure | None) -> None:
        """Answer every request, ping and index calls included, with `failure` (None: stop)."""
        self._fail_all = failure

    async def wait_for_requests(self, n: int) -> None:
        """Wait until `n` bulk requests in total have been received and answered."""
        if len(self.requests) >= n:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._request_waiters.append((n, future))
        await future

    # -- assertions helpers -----------------------------------------------------------------

    def doc(self, doc_id: str | int, index: str | None = None) -> StoredDocument | None:
        """The live document `doc_id` of `index` (an alias works; default: the only index)."""
        if index is None:
            if len(self.documents) != 1:
                raise ValueError(f"name the index: documents are in {sorted(self.documents)}")
            index = next(iter(self.documents))
        return self.documents.get(self._resolve(index), {}).get(str(doc_id))

    def aliases(self) -> dict[str, list[str]]:
        """alias -> indices it points at."""
        result: dict[str, list[str]] = {}
        for name, index in self.indices.items():
            for alias in index.aliases:
                result.setdefault(alias, []).append(name)
        return result

    # -- HTTP handlers ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        failure = self._fail_all
        if failure is not None and not request.path.endswith("/_bulk"):
            return self._whole_failure(failure)
        response: web.StreamResponse = await handler(request)
        return response

    async def _info(self, request: web.Request) -> web.Response:
        return _json(
            {
                "name": "fake-bulk-node",
                "cluster_name": self.cluster_name,
                "cluster_uuid": "fake-bulk-uuid",
                "version": {
                    "distribution": "opensearch",
                    "number": VERSION_NUMBER,
                    "build_type": "tar",
                    "lucene_version": "9.12.0",
                    "minimum_wire_compatibility_version": "7.10.0",
                    "minimum_index_compatibility_version": "7.0.0",
                },
                "tagline": "The OpenSearch Project: https://opensearch.org/",
            }
        )

    async def _index_exists(self, request: web.Request) -> web.Response:
        name = request.match_info["index"]
        found = name in self.indices or name in self.aliases()
        return web.Response(status=200 if found else 404)

    async def _create_index(self, request: web.Request) -> web.Response:
        name = request.match_info["index"]
        if name in self.indices or name in self.aliases():
            return _json(
                error_body(
                    400, "resource_already_exists_exception", f"index [{name}] already exists"
                ),
                400,
            )
        body = await request.read()
        self.indices[name] = _Index(body=orjson.loads(body) if body.strip() else {})
        self.documents.setdefault(name, {})
        return _json({"acknowledged": True, "shards_acknowledged": True, "index": name})

    async def _get_alias(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        only = request.match_info.get("index")
        found = {
            index: {"aliases": {name: spec.aliases[name]}}
            for index, spec in self.indices.items()
            if name in spec.aliases and (only is None or index == only)
        }
        if not found:
            return _json({"error": f"alias [{name}] missing", "status": 404}, 404)
        return _json(found)

    async def _update_aliases(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        actions = body.get("actions", [])
        # validate first: the real request is atomic
        for action in actions:
            (op, spec), *_ = action.items()
            if spec.get("index") not in self.indices:
                return _json(
                    error_body(404, "index_not_found_exception", f"no such index [{spec}]"), 404
                )
        for action in actions:
            (op, spec), *_ = action.items()
            aliases = self.indices[spec["index"]].aliases
            if op == "add":
                aliases[spec["alias"]] = {k: v for k, v in spec.items() if k not in ("index",)}
            elif op == "remove":
                aliases.pop(spec["alias"], None)
        return _json({"acknowledged": True})

    async def _bulk(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        url_index = request.match_info.get("index")
        raw = await request.read()
        try:
            items = parse_ndjson(raw)
        except ValueError as exc:
            record = BulkRequest(url_index, [])
            return self._finish(record, _json(error_body(400, "parse_exception", str(exc)), 400))
        record = BulkRequest(url_index, items)
        if self.latency_per_item_s:
            await asyncio.sleep(self.latency_per_item_s * len(items))
        request_no = len(self.requests)
        step: Step | None
        if self._fail_all is not None:
            step = self._fail_all
        elif self._steps:
            step = self._steps.pop(0)
        else:
            step = self._default
        if isinstance(step, WholeFailure):
            return self._finish(record, self._whole_failure(step))
        answers: list[dict[str, Any]] = []
        for item_no, (action, source) in enumerate(items):
            op = next(iter(action), "index")
            meta = _meta(action)
            index = self._resolve(str(meta.get("_index") or url_index or ""))
            doc_id = str(meta.get("_id") or f"auto{next(self._auto_ids)}")
            spec = spec_for(step, request_no, item_no, doc_id, action, source)
            answer = self._apply(op, index, doc_id, meta, source, spec)
            answers.append({op: answer})
        took = int((time.perf_counter() - started) * 1000)
        errors = any(next(iter(a.values()))["status"] >= 300 for a in answers)
        return self._finish(record, _json({"took": took, "errors": errors, "items": answers}))

    # -- bulk internals ---------------------------------------------------------------------

    def _finish(self, record: BulkRequest, response: web.Response) -> web.Response:
        record.status = response.status
        body = response.body
        record.response = orjson.loads(body) if isinstance(body, bytes) and body else {}
        self.requests.append(record)
        count = len(self.requests)
        pending: list[tuple[int, asyncio.Future[None]]] = []
        for n, future in self._request_waiters:
            if future.done():
                continue
            if count >= n:
                future.set_result(None)
            else:
                pending.append((n, future))
        self._request_waiters = pending
        return response

    def _whole_failure(self, failure: WholeFailure) -> web.Response:
        error_type = failure.error_type or WHOLE_ERROR_TYPES.get(failure.status, "exception")
        reason = failure.reason or f"scripted HTTP {failure.status} ({error_type})"
        return _json(
            error_body(failure.status, error_type, reason), failure.status, failure.headers
        )

    def _resolve(self, name: str) -> str:
        """An alias name becomes its write index (or its only index)."""
        if name in self.indices:
            return name
        targets = [
            index
            for index, spec in self.indices.items()
            if name in spec.aliases
            and (spec.aliases[name].get("is_write_index", True) or len(self.indices) == 1)
        ]
        return targets[0] if targets else name

    def _apply(
        self,
        op: str,
        index: str,
        doc_id: str,
        meta: dict[str, Any],
        source: dict[str, Any] | None,
        spec: ItemResponse | None,
    ) -> dict[str, Any]:
        if not index:
            return item_error(
                index, doc_id, 400, "action_request_validation_exception", "index is missing"
            )
        if index not in self.indices:  # auto-create, as action.auto_create_index does
            self.indices[index] = _Index(body={})
        docs = self.documents.setdefault(index, {})
        tombstones = self._tombstones.setdefault(index, {})
        current = docs.get(doc_id)
        current_version = current.version if current else tombstones.get(doc_id)
        given = meta.get("version")
        if spec is not None:
            if not spec.ok:
                error_type = spec.error_type or ITEM_ERROR_TYPES.get(spec.status, "exception")
                reason = spec.reason or REASONS.get(error_type, "scripted {type}").format(
                    index=index, id=doc_id, type=error_type
                )
                return item_error(index, doc_id, spec.status, error_type, reason)
            version = int(given) if given is not None else (current_version or 0) + 1
            return self._write(op, index, doc_id, source, version, status=spec.status)
        version_type = meta.get("version_type", "internal")
        if op == "create" and current is not None:
            return item_error(
                index,
                doc_id,
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists "
                f"(current version [{current.version}])",
            )
        if op not in ("index", "create", "delete"):
            return item_error(
                index,
                doc_id,
                400,
                "illegal_argument_exception",
                f"the fake does not support [{op}]",
            )
        if version_type in ("external", "external_gte"):
            if given is None:
                return item_error(
                    index,
                    doc_id,
                    400,
                    "action_request_validation_exception",
                    "an external version must be set",
                )
            version = int(given)
            stale = current_version is not None and (
                version < current_version
                or (version_type == "external" and version == current_version)
            )
            if stale:
                word = "higher or equal to" if version_type == "external" else "higher than"
                return item_error(
                    index,
                    doc_id,
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, current version [{current_version}] is "
                    f"{word} the one provided [{version}]",
                )
        else:
            version = (current_version or 0) + 1
        return self._write(op, index, doc_id, source, version, status=None)

    def _write(
        self,
        op: str,
        index: str,
        doc_id: str,
        source: dict[str, Any] | None,
        version: int,
        *,
        status: int | None,
    ) -> dict[str, Any]:
        docs = self.documents.setdefault(index, {})
        tombstones = self._tombstones.setdefault(index, {})
        existed = doc_id in docs
        seq_no = next(self._seq)
        if op == "delete":
            docs.pop(doc_id, None)
            tombstones[doc_id] = version
            result = "deleted" if existed else "not_found"
            natural = 200 if existed else 404
        else:
            docs[doc_id] = StoredDocument(source=source or {}, version=version, seq_no=seq_no)
            tombstones.pop(doc_id, None)
            result = "updated" if existed else "created"
            natural = 200 if existed else 201
        return {
            "_index": index,
            "_id": doc_id,
            "_version": version,
            "result": result,
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": seq_no,
            "_primary_term": 1,
            "status": status if status is not None else natural,
        }
