"""Fault proxy: each mode does to loopback connections what the failure tests rely on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from support.fault_proxy import FaultProxy, Mode

#: how long a read must stay unanswered to count as stalled (a timeout, never a sleep)
STALL_S = 0.3


class EchoServer:
    """Echoes every byte back; counts the connections that reached it."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoServer, int]]:
    server = EchoServer()
    port = await server.start()
    try:
        yield server, port
    finally:
        await server.stop()


@pytest.fixture
async def proxy(echo: tuple[EchoServer, int]) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo[1]) as fault_proxy:
        yield fault_proxy


@contextlib.asynccontextmanager
async def connect(
    proxy: FaultProxy,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> bytes:
    writer.write(payload)
    await writer.drain()
    return await reader.readexactly(len(payload))


async def assert_stalled(reader: asyncio.StreamReader) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(100), STALL_S)


async def assert_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The peer reset the connection: a read fails (or a write does, if it comes first)."""
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        writer.write(b"x")
        await writer.drain()
        await reader.readexactly(1)


async def test_pass_forwards_both_ways_and_counts(
    proxy: FaultProxy, echo: tuple[EchoServer, int]
) -> None:
    assert proxy.mode is Mode.PASS
    assert proxy.address == f"127.0.0.1:{proxy.port}"
    assert proxy.url() == f"http://127.0.0.1:{proxy.port}"
    assert proxy.url("https").startswith("https://")
    async with connect(proxy) as (reader, writer):
        assert await roundtrip(reader, writer, b"hello") == b"hello"
        assert await roundtrip(reader, writer, b"x" * 200_000) == b"x" * 200_000
    assert proxy.connections_total == 1
    assert proxy.bytes_up == proxy.bytes_down == 200_005
    assert echo[0].connections == 1


async def test_refuse_refuses_new_connections(proxy: FaultProxy) -> None:
    await proxy.set_mode(Mode.REFUSE)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(proxy.host, proxy.port)


async def test_back_to_pass_listens_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    await proxy.set_mode(Mode.REFUSE)
    await proxy.set_mode(Mode.PASS)
    assert proxy.port == port
    async with connect(proxy) as (reader, writer):
        assert await roundtrip(reader, writer, b"again") == b"again"


async def test_reset_resets_new_connections_and_counts_the_attempt(
    proxy: FaultProxy, echo: tuple[EchoServer, int]
) -> None:
    await proxy.set_mode(Mode.RESET)
    attempt = proxy.wait_for_connection_attempt()
    async with connect(proxy) as (reader, writer):
        assert await attempt == 1
        await assert_reset(reader, writer)
    assert echo[0].connections == 0
    await proxy.set_mode(Mode.PASS)
    async with connect(proxy) as (reader, writer):
        assert await roundtrip(reader, writer, b"ok") == b"ok"


@pytest.mark.parametrize("mode", [Mode.REFUSE, Mode.RESET])
async def test_failure_modes_cut_existing_connections(proxy: FaultProxy, mode: Mode) -> None:
    async with connect(proxy) as (reader, writer):
        assert await roundtrip(reader, writer, b"before") == b"before"
        await proxy.set_mode(mode)
        await assert_reset(reader, writer)
    assert proxy.connections_active == 0


async def test_blackhole_stalls_existing_connections_then_delivers_after_pass(
    proxy: FaultProxy,
) -> None:
    async with connect(proxy) as (reader, writer):
        assert await roundtrip(reader, writer, b"before") == b"before"
        await proxy.set_mode(Mode.BLACKHOLE)
        writer.write(b"held")
        await writer.drain()
        await assert_stalled(reader)
        await proxy.set_mode(Mode.PASS)
        assert await reader.readexactly(4) == b"held"


async def test_blackhole_healed_with_drop_stalled_forgets_held_connections_only(
    proxy: FaultProxy,
) -> None:
    async with connect(proxy) as (reader, writer):
        await proxy.set_mode(Mode.BLACKHOLE)
        writer.write(b"held")
        await writer.drain()
        await proxy.set_mode(Mode.PASS, drop_stalled=True)
        await assert_stalled(reader)
        async with connect(proxy) as (fresh_reader, fresh_writer):
            assert await roundtrip(fresh_reader, fresh_writer, b"new") == b"new"
        await assert_stalled(reader)


async def test_blackhole_accepts_new_connections_but_never_reaches_upstream(
    proxy: FaultProxy, echo: tuple[EchoServer, int]
) -> None:
    await proxy.set_mode(Mode.BLACKHOLE)
    attempt = proxy.wait_for_connection_attempt()
    async with connect(proxy) as (reader, writer):
        await attempt
        writer.write(b"lost?")
        await writer.drain()
        await assert_stalled(reader)
        assert echo[0].connections == 0
        await proxy.set_mode(Mode.PASS)
        assert await reader.readexactly(5) == b"lost?"
    assert echo[0].connections == 1


async def test_latency_delays_every_chunk(proxy: FaultProxy) -> None:
    """A reference timer shorter than the two delays (up and down) must fire first.

    Event-loop timers fire in deadline order, so this is an ordering check, not a timing one.
    """
    loop = asyncio.get_running_loop()
    async with connect(proxy) as (reader, writer):
        await proxy.set_mode(Mode.LATENCY, latency_s=0.15)
        assert proxy.latency_s == 0.15
        order: list[str] = []
        timer = loop.call_later(0.2, order.append, "reference timer")
        try:
            assert await roundtrip(reader, writer, b"slow") == b"slow"
            order.append("echo")
        finally:
            timer.cancel()
    assert order == ["reference timer", "echo"]


async def test_connection_attempt_hook_and_counter(proxy: FaultProxy) -> None:
    first = proxy.wait_for_connection_attempt()
    assert not first.done()
    async with connect(proxy):
        assert await first == 1
    second = proxy.wait_for_connection_attempt()
    async with connect(proxy):
        assert await second == 2
    assert await asyncio.wait_for(proxy.wait_for_connections(2), 5) == 2


async def test_upstream_down_resets_the_client() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with FaultProxy("127.0.0.1", port) as fault_proxy, connect(fault_proxy) as conn:
        await assert_reset(*conn)


async def test_stop_is_idempotent_and_closes_everything(echo: tuple[EchoServer, int]) -> None:
    fault_proxy = FaultProxy("127.0.0.1", echo[1])
    await fault_proxy.start()
    port = fault_proxy.port
    async with connect(fault_proxy) as (reader, writer):
        assert await roundtrip(reader, writer, b"hi") == b"hi"
        await fault_proxy.stop()
        await fault_proxy.stop()
        await assert_reset(reader, writer)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
