"""Observability plumbing: start and stop one aiohttp application on one TCP port.

The metrics/health server and the test suite's fake OpenSearch both serve an aiohttp app; this
is the one copy of the runner/site set-up, including the clean-up a failed bind needs (a taken
port must not leave a half-set-up runner behind).
"""

from __future__ import annotations

from aiohttp import web


class AiohttpSite:
    """One `web.Application` on `host:port` (0: the OS picks); idempotent `start`/`stop`."""

    def __init__(self, host: str, port: int, *, shutdown_timeout: float) -> None:
        self._host = host
        self._requested_port = port
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        """The port actually bound; kept after `stop()` for log lines."""
        if self._port is None:
            raise RuntimeError("the site has not been started")
        return self._port

    async def start(self, app: web.Application) -> bool:
        """Bind and serve `app`; False when already running. OSError when the port is taken."""
        if self._runner is not None:
            return False
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return True

    async def stop(self) -> bool:
        """Close the listener and open connections; False when it was not running."""
        runner, self._runner = self._runner, None
        if runner is None:
            return False
        await runner.cleanup()
        return True


__all__ = ["AiohttpSite"]
