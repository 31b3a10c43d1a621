"""Observability: the HTTP server Prometheus scrapes and Kubernetes probes.

Serves `/metrics` (Prometheus text or OpenMetrics, negotiated from `Accept` the way
client_python's own server does), `/healthz` (liveness) and `/readyz` (readiness). What
"live" and "ready" mean belongs to the pipeline, so the server only asks a `HealthProbe`
and turns its answer into 200 or 503 with a JSON body an operator can read in `kubectl
describe`. A probe that raises counts as failing: a broken health check must never look
healthy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from stream_indexer.lifecycle import Lifecycle
from stream_indexer.masking import mask_text
from stream_indexer.observability.aiohttp_site import AiohttpSite

log = logging.getLogger(__name__)

# Seconds `stop()` waits for open scrapes/probes before closing their connections.
_SHUTDOWN_TIMEOUT_S = 2.0


class HealthProbe(Protocol):
    """What the pipeline tells the server about its health; both calls must be cheap."""

    def liveness(self) -> tuple[bool, str]:
        """(alive, detail): False makes the orchestrator restart the process."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """(ready, detail): False takes the pod out of service, without a restart."""
        ...


class ObservabilityServer(Lifecycle):
    """aiohttp server for /metrics, /healthz and /readyz; `start()`/`stop()` or `async with`."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, probe: HealthProbe
    ) -> None:
        self._host = host
        self._site = AiohttpSite(host, port, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        self._registry = registry
        self._probe = probe
        self._last_state: dict[str, bool] = {}

    @property
    def port(self) -> int:
        """The port actually bound (the OS's choice when 0 was asked for)."""
        try:
            return self._site.port
        except RuntimeError:
            raise RuntimeError("ObservabilityServer is not started") from None

    async def _start(self) -> None:
        """Bind and serve; raises OSError when the port is taken."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        await self._site.start(app)
        log.info(
            "observability server listening",
            extra={"host": self._host, "port": self._site.port},
        )

    async def _stop(self) -> None:
        """Close the listener and open connections."""
        if await self._site.stop():
            log.info("observability server stopped", extra={"port": self._site.port})

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._probe_response("liveness", self._probe.liveness)

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._probe_response("readiness", self._probe.readiness)

    def _probe_response(self, name: str, check: Callable[[], tuple[bool, str]]) -> web.Response:
        try:
            ok, detail = check()
        except Exception as exc:  # a broken probe must read as unhealthy, not crash the server
            log.exception("%s probe raised", name)
            ok, detail = False, f"{name} probe raised {type(exc).__name__}: {exc}"
        # Log transitions only: probes run every few seconds and would flood the logs.
        if self._last_state.get(name) != ok:
            self._last_state[name] = ok
            log.log(
                logging.INFO if ok else logging.WARNING,
                "%s probe %s",
                name,
                "passing" if ok else "failing",
                extra={"detail": detail},
            )
        return web.json_response(
            {"status": "ok" if ok else "fail", "detail": mask_text(detail)},
            status=200 if ok else 503,
        )


__all__ = ["HealthProbe", "ObservabilityServer"]
