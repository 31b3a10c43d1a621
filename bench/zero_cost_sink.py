"""Benchmark sink: a local OpenSearch stand-in that costs nothing, so only the client counts.

`python -m bench.zero_cost_sink` serves, in its own process, the few calls the indexer makes
(`HEAD /`, `_cluster/health`, index and alias existence and creation) and `_bulk`: each body
is read in full and every item answered as written (201, or 200 for a delete) at once,
trimmed as `filter_path` asks. Nothing is stored, so a consumer's events/s and CPU against it
are its own ceiling, not the server's (osmem's per-request cost hides them). It prints
`{"url": ...}` once it listens. With `--elastic-product` every answer carries the header the
Elasticsearch Python client insists on (its product check), so that a consumer built on it
(Quix Streams' sink, bench/quix_consumer.py) can be measured too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import orjson
from aiohttp import web

_JSON = "application/json"
_INFO = orjson.dumps(
    {
        "name": "zero-cost-sink",
        "cluster_name": "bench",
        "version": {"number": "2.19.0", "distribution": "opensearch"},
        "tagline": "The OpenSearch Project: https://opensearch.org/",
    }
)
_HEALTH = orjson.dumps({"cluster_name": "bench", "status": "green", "timed_out": False})
_ITEM = {
    op: orjson.dumps({op.decode(): {"status": 200 if op == b"delete" else 201}})
    for op in (b"index", b"create", b"update", b"delete")
}
_ACTIONS_WITH_SOURCE = (b"index", b"create", b"update")


def bulk_ops(body: bytes) -> list[bytes]:
    """The action of each item in an NDJSON bulk body (a delete has no source line)."""
    ops: list[bytes] = []
    lines = body.split(b"\n")
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        start = line.index(b'"') + 1
        op = line[start : line.index(b'"', start)]
        ops.append(op)
        if op in _ACTIONS_WITH_SOURCE:
            i += 1
    return ops


def bulk_answer(body: bytes, filter_path: str | None) -> bytes:
    """Every item written; with a `filter_path`, the trimmed shape OpenSearch would send."""
    items = b",".join(_ITEM.get(op, _ITEM[b"index"]) for op in bulk_ops(body))
    head = b'{"errors":false' if filter_path else b'{"took":0,"errors":false'
    return head + b',"items":[' + items + b"]}"


class ZeroCostSink:
    """The indices and aliases created so far (existence checks must turn true) and a
    counter of bulk items, for the benchmark's sanity check."""

    def __init__(self, *, elastic_product: bool = False) -> None:
        self.elastic_product = elastic_product
        self.indices: set[str] = set()
        #: alias -> the indices it points to
        self.aliases: dict[str, set[str]] = {}
        self.items = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        if self.elastic_product:
            app.on_response_prepare.append(_elastic_product_header)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts and parts[-1] == "_bulk":
            answer = bulk_answer(body, request.query.get("filter_path"))
            self.items += answer.count(b'"status"')
            return web.Response(body=answer, content_type=_JSON)
        if not parts:
            return web.Response(body=b"" if method == "HEAD" else _INFO, content_type=_JSON)
        if parts[0] == "_cluster":
            return web.Response(body=_HEALTH, content_type=_JSON)
        if parts[0] == "_aliases":
            for action in orjson.loads(body or b"{}").get("actions", []):
                for kind, spec in action.items():
                    targets = self.aliases.setdefault(spec.get("alias", ""), set())
                    if kind == "add":
                        targets.add(spec.get("index", ""))
                    else:
                        targets.discard(spec.get("index", ""))
            return web.Response(body=b'{"acknowledged":true}', content_type=_JSON)
        if parts[0] == "_alias":
            return self._alias(method, parts[1])
        if len(parts) == 1:
            if method == "PUT":
                self.indices.add(parts[0])
                for alias in orjson.loads(body or b"{}").get("aliases", {}):
                    self.aliases.setdefault(alias, set()).add(parts[0])
                return web.Response(body=b'{"acknowledged":true}', content_type=_JSON)
            return self._exists(
                method, parts[0] in self.indices or bool(self.aliases.get(parts[0]))
            )
        return web.Response(body=b"{}", content_type=_JSON)

    def _alias(self, method: str, alias: str) -> web.Response:
        """`GET /_alias/<name>` in OpenSearch's shape (index -> its aliases); 404 if none."""
        targets = self.aliases.get(alias)
        if not targets or method == "HEAD":
            return self._exists(method, bool(targets))
        answer: dict[str, object] = {index: {"aliases": {alias: {}}} for index in sorted(targets)}
        return web.Response(body=orjson.dumps(answer), content_type=_JSON)

    @staticmethod
    def _exists(method: str, found: bool) -> web.Response:
        status = 200 if found else 404
        return web.Response(
            status=status, body=b"" if method == "HEAD" else b"{}", content_type=_JSON
        )


async def _elastic_product_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Elastic-Product"] = "Elasticsearch"


async def serve(host: str, port: int, *, elastic_product: bool = False) -> None:
    runner = web.AppRunner(ZeroCostSink(elastic_product=elastic_product).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(orjson.dumps({"url": f"http://{host}:{port}"}).decode(), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zero_cost_sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--elastic-product", action="store_true", help="answer as Elasticsearch (header)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, elastic_product=args.elastic_product))
    return 0


if __name__ == "__main__":
    sys.exit(main())
