"""Test support: an authenticating HTTP front for osmem (which has neither auth nor TLS).

Put a `TlsProxy` before it for HTTPS. It answers 401 to missing or wrong basic credentials,
and in SigV4 mode recomputes each request's signature with botocore's signer for known
credentials over the body bytes exactly as received (gzip included), answering 403 on a
mismatch as Amazon OpenSearch Service does. Accepted requests go on to osmem unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from support.tls_endpoints import ThreadLoop

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<headers>[^,]+), Signature=(?P<sig>\w+)"
)
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "authorization"}


@dataclass
class AuthFront:
    """`basic` = (user, password); or `sigv4` = (key id, secret, region, service)."""

    upstream: str
    basic: tuple[str, str] | None = None
    sigv4: tuple[str, str, str, str] | None = None
    #: (method, path, content-encoding) of every request that passed the check
    accepted: list[tuple[str, str, str]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def start(self, thread: ThreadLoop) -> int:
        """Serve on a free port of 127.0.0.1 on `thread`'s loop; returns the port."""

        async def serve() -> int:
            app = web.Application(client_max_size=200 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self._session = aiohttp.ClientSession(auto_decompress=False)
            server = site._server
            assert server is not None and server.sockets
            return int(server.sockets[0].getsockname()[1])

        return thread.run(serve())

    def stop(self, thread: ThreadLoop) -> None:
        async def shut() -> None:
            await self._session.close()
            await self._runner.cleanup()

        thread.run(shut())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # as sent: the runner does not decompress
        problem = self._refusal(request, body)
        if problem is not None:
            self.refusals.append(problem)
            status = 401 if self.basic is not None else 403
            return web.json_response(
                {"error": {"type": "security_exception", "reason": problem}}, status=status
            )
        self.accepted.append(
            (request.method, request.path, request.headers.get("content-encoding", ""))
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            payload = await answer.read()
            keep = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=answer.status, body=payload, headers=keep)

    def _refusal(self, request: web.Request, body: bytes) -> str | None:
        if self.basic is not None:
            expected = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
            return None if request.headers.get("authorization") == expected else "bad credentials"
        assert self.sigv4 is not None
        return _sigv4_problem(request, body, *self.sigv4)


def _sigv4_problem(
    request: web.Request, body: bytes, key_id: str, secret: str, region: str, service: str
) -> str | None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _SIGV4.fullmatch(request.headers.get("authorization", ""))
    if match is None:
        return "no SigV4 authorization header"
    if (match["key"], match["region"], match["service"]) != (key_id, region, service):
        return "wrong key, region or service"
    if request.headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        return "the body sent is not the body signed"
    signed = match["headers"].split(";")
    headers = {name: request.headers.get(name, "") for name in signed}
    aws = AWSRequest(
        method=request.method,
        url=f"https://{request.headers['host']}{request.path_qs}",
        data=body,
        headers=headers,
    )
    aws.context["timestamp"] = request.headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(key_id, secret), service, region)
    canonical = signer.canonical_request(aws)
    expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
    return None if expected == match["sig"] else "signature does not match"
