"""Process runner: wires settings, logging, the HTTP endpoints and the service to signals.

SIGTERM or the first SIGINT asks the service to stop (drain, commit, exit 0); a second
SIGINT exits at once with 130, for the operator who really means it. A start step that fails
for good raises `StartupFailedError` after the clients opened so far are closed; the CLI
turns it into one line and exit code 3.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from stream_indexer.app.gc_tuning import tune_gc
from stream_indexer.app.service import IndexerService
from stream_indexer.app.startup_errors import StartupFailedError, Step, startup_step
from stream_indexer.errors import StartupAbortedError
from stream_indexer.observability.http_server import ObservabilityServer
from stream_indexer.observability.metrics import Metrics
from stream_indexer.settings import Settings

log = logging.getLogger(__name__)


def quiet_client_loggers() -> None:
    """opensearch-py logs every request at INFO and every failed one with a traceback at
    WARNING; the service logs its own retries, so only the client's errors are kept."""
    for name in ("opensearch", "elastic_transport"):
        logging.getLogger(name).setLevel(logging.ERROR)


def prepare_process() -> None:
    """What every process that runs the indexer does first: quiet the client loggers and
    tune the garbage collector (`gc_tuning`)."""
    quiet_client_loggers()
    tune_gc()


def install_stop_signals(loop: asyncio.AbstractEventLoop, request_stop: Callable[[], None]) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second SIGINT: immediate exit."""
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            log.warning("second interrupt: exiting now without draining")
            os._exit(130)
        log.info("interrupt received: draining and committing (Ctrl-C again to exit now)")
        request_stop()

    def on_sigterm() -> None:
        log.info("SIGTERM received: draining and committing")
        request_stop()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


async def serve(settings: Settings, metrics: Metrics | None = None) -> None:
    """Run the indexer (and its /metrics, /healthz, /readyz server) until a stop signal."""
    prepare_process()
    metrics = metrics or Metrics()
    service = IndexerService(settings, metrics)
    install_stop_signals(asyncio.get_running_loop(), service.request_stop)
    http: ObservabilityServer | None = None
    if settings.metrics.enabled:
        http = ObservabilityServer(
            settings.metrics.host, settings.metrics.port, metrics.registry, service
        )
        with startup_step(Step.METRICS):
            await http.start()
        log.info("metrics on http://%s:%d/metrics", settings.metrics.host, http.port)
    try:
        try:
            await service.start()
        except StartupAbortedError:
            log.info("stopped before start-up completed")
            await service.stop()
            return
        except StartupFailedError:
            await service.stop()
            raise
        await service.run_until_stopped()
    finally:
        if http is not None:
            await http.stop()
