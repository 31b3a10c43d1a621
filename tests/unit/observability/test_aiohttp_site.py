"""AiohttpSite: binds, serves, refuses a taken port cleanly, and stops idempotently."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from stream_indexer.observability.aiohttp_site import AiohttpSite


def hello_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def test_serves_on_the_port_the_os_picked_and_stops_twice() -> None:
    site = AiohttpSite("127.0.0.1", 0, shutdown_timeout=0.5)
    with pytest.raises(RuntimeError):
        _ = site.port
    assert await site.start(hello_app()) is True
    assert await site.start(hello_app()) is False  # already running: no second listener
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{site.port}/") as response,
    ):
        assert await response.text() == "hi"
    assert await site.stop() is True
    assert await site.stop() is False
    assert not site.running
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{site.port}/")


async def test_a_taken_port_raises_and_leaves_the_site_stopped() -> None:
    first = AiohttpSite("127.0.0.1", 0, shutdown_timeout=0.5)
    await first.start(hello_app())
    try:
        second = AiohttpSite("127.0.0.1", first.port, shutdown_timeout=0.5)
        with pytest.raises(OSError):
            await second.start(hello_app())
        assert not second.running
        assert await second.stop() is False
    finally:
        await first.stop()
