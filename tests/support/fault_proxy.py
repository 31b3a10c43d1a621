"""Test support: a fault-injecting TCP proxy between the pipeline and one of its servers.

The local stack has no toxiproxy and no `tc netem`, and its servers never fail on their own,
so failure tests put this proxy in front of OpenSearch, Postgres or a Kafka broker and switch
its `Mode` while the service runs:

    PASS       forward bytes both ways
    REFUSE     the port stops listening: connects get ECONNREFUSED; open connections are reset
    BLACKHOLE  connections are accepted and kept, nothing moves either way (a dead network);
               held bytes flow again, in order, once the mode returns to PASS or LATENCY,
               unless the switch says `drop_stalled=True`: then the connections the
               blackhole held stay silent for good (a restarted node or a firewall that
               forgot them never answers), and only new connections work
    RESET      every connection is reset (RST via SO_LINGER 0) as soon as it is accepted;
               open connections are reset too
    LATENCY    PASS, with every chunk delivered `latency_s` after it was read (a delay line,
               not a bandwidth cap)

Switching to REFUSE, RESET or BLACKHOLE also hits connections that are already open (reset or
stalled), so a client with a keep-alive pool sees the outage instead of reusing a healthy
socket. While refusing, the port stays bound (to a socket that does not listen), so switching
back re-listens on the same port and nothing else can take it meanwhile.

In REFUSE mode the kernel answers connection attempts, so they are not counted and do not
resolve `wait_for_connection_attempt()`; use RESET when a test must see the client retry.

Kafka: a client connects to the bootstrap address only for metadata and then to each broker's
*advertised* address. A proxy in front of a broker therefore only sees the traffic when the
broker advertises the proxy's address, e.g. start tansu with
`--advertised-listener-url tcp://127.0.0.1:<proxy.port>` (and `--listener-url` on its own
port, which is the proxy's upstream). Otherwise clients bypass the proxy after bootstrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

__all__ = ["FaultProxy", "Mode"]

CHUNK_BYTES = 64 * 1024
#: chunks read ahead per direction (in flight in the delay line or held by a blackhole)
QUEUE_CHUNKS = 16
_LINGER_ZERO = struct.pack("ii", 1, 0)


class Mode(enum.Enum):
    """What the proxy does with connections (see the module docstring)."""

    PASS = "pass"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"
    RESET = "reset"
    LATENCY = "latency"


async def _forever() -> None:
    """Hold a forgotten connection until the proxy resets it or stops."""
    await asyncio.get_running_loop().create_future()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


class _Link:
    """One accepted client connection and, once it is open, its upstream connection."""

    __slots__ = ("client", "forgotten", "tasks", "upstream")

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        #: the blackhole's connection that the healed side forgot: it never flows again
        self.forgotten = False

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)

    def close(self) -> None:
        self.client.close()
        if self.upstream is not None:
            self.upstream.close()


class FaultProxy:
    """Forwards `listen_host:listen_port` to `upstream_host:upstream_port`, faults on demand.

    Use as `async with FaultProxy(host, port) as proxy:` and point the client at
    `proxy.address` / `proxy.url()`. `listen_port=0` picks a free port once, at `start()`;
    the port then stays the same across mode switches until `stop()`.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._listen_host = listen_host
        self._port = listen_port
        self._mode = Mode.PASS
        self._latency_s = 0.0
        self._server: asyncio.Server | None = None
        #: bound, not listening: holds the port while refusing
        self._placeholder: socket.socket | None = None
        self._started = False
        self._stopped = False
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._attempt_waiters: list[asyncio.Future[int]] = []
        self._count_waiters: list[tuple[int, asyncio.Future[int]]] = []
        #: connections accepted (in any mode but REFUSE, which the kernel answers)
        self.connections_total = 0
        #: bytes written to the upstream server / to the clients
        self.bytes_up = 0
        self.bytes_down = 0

    # -- addresses --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._listen_host

    @property
    def port(self) -> int:
        if not self._started:
            raise RuntimeError("FaultProxy is not started")
        return self._port

    @property
    def address(self) -> str:
        """`host:port`, e.g. for Kafka bootstrap servers."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.address}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def latency_s(self) -> float:
        return self._latency_s

    @property
    def connections_active(self) -> int:
        return len(self._links)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        if self._stopped:
            raise RuntimeError("a stopped FaultProxy cannot be started again")
        sock = self._bind()
        self._port = sock.getsockname()[1]
        self._started = True
        if self._mode is Mode.REFUSE:
            self._placeholder = sock
        else:
            await self._listen(sock)

    async def stop(self) -> None:
        """Stop listening and reset every connection; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self._flowing.set()
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        tasks: list[asyncio.Task[Any]] = []
        for link in list(self._links):
            tasks.extend(link.tasks)
            link.reset()
        self._links.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for future in self._attempt_waiters:
            future.cancel()
        for _, future in self._count_waiters:
            future.cancel()
        self._attempt_waiters.clear()
        self._count_waiters.clear()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- faults -----------------------------------------------------------------------------

    async def set_mode(
        self, mode: Mode, *, latency_s: float = 0.0, drop_stalled: bool = False
    ) -> None:
        """Switch the behaviour now; when this returns the new mode is in force.

        `latency_s` is the delay of every chunk in LATENCY mode (ignored otherwise). Chunks
        already in the delay line keep the delay they were read with. `drop_stalled`, when
        leaving BLACKHOLE, leaves the connections it held silent for good.
        """
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if drop_stalled and self._mode is Mode.BLACKHOLE:
            for link in self._links:
                link.forgotten = True
        self._mode = mode
        self._latency_s = latency_s if mode is Mode.LATENCY else 0.0
        if mode is Mode.BLACKHOLE:
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode in (Mode.REFUSE, Mode.RESET):
            for link in list(self._links):
                link.reset()
        if not self._started or self._stopped:
            return
        if mode is Mode.REFUSE and self._server is not None:
            self._unlisten()
        elif mode is not Mode.REFUSE and self._server is None:
            sock, self._placeholder = self._placeholder, None
            await self._listen(sock if sock is not None else self._bind())

    # -- observation ------------------------------------------------------------------------

    def wait_for_connection_attempt(self) -> asyncio.Future[int]:
        """A future resolved by the next accepted connection after this call.

        It is registered when called (not when awaited), so a test can create it, make the
        client act, then await it. Its result is `connections_total` at that connection.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._attempt_waiters.append(future)
        return future

    async def wait_for_connections(self, total: int) -> int:
        """Wait until `connections_total >= total`; returns `connections_total`."""
        if self.connections_total >= total:
            return self.connections_total
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._count_waiters.append((total, future))
        return await future

    def _notify_connection(self) -> None:
        count = self.connections_total
        waiters, self._attempt_waiters = self._attempt_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(count)
        pending: list[tuple[int, asyncio.Future[int]]] = []
        for total, future in self._count_waiters:
            if future.done():
                continue
            if count >= total:
                future.set_result(count)
            else:
                pending.append((total, future))
        self._count_waiters = pending

    # -- listening socket -------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        family, type_, proto, _, addr = socket.getaddrinfo(
            self._listen_host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _listen(self, sock: socket.socket) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, sock=sock, backlog=128)
        except BaseException:
            sock.close()
            raise

    def _unlisten(self) -> None:
        """Close the listener and bind the port again at once (no await in between)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._placeholder = self._bind()

    # -- connections ------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        self._notify_connection()
        if self._stopped or self._mode in (Mode.RESET, Mode.REFUSE):
            _reset(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        self._spawn(link, self._run(link, reader))

    def _spawn(self, link: _Link, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)
        return task

    async def _run(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        try:
            # a blackhole holds new connections before they reach the upstream server
            await self._flowing.wait()
            if link.forgotten:
                await _forever()
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                link.reset()
                return
            link.upstream = up_writer
            pending = {
                self._spawn(link, self._pump(link, client_reader, up_writer, upward=True)),
                self._spawn(link, self._pump(link, up_reader, link.client, upward=False)),
            }
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(not task.cancelled() and task.result() is False for task in done):
                    link.reset()
                    return
            link.close()
        finally:
            self._links.discard(link)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upward: bool,
    ) -> bool:
        """Copy one direction through the delay line; False when it ended by a reset."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(QUEUE_CHUNKS)
        feeder = loop.create_task(self._feed(reader, queue))
        try:
            while True:
                deliver_at, data = await queue.get()
                delay = deliver_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._flowing.wait()
                if link.forgotten:
                    await _forever()
                if data is None:
                    return False
                if not data:
                    if writer.can_write_eof() and not writer.is_closing():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return True
                writer.write(data)
                if upward:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                try:
                    await writer.drain()
                except OSError:
                    return False
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    async def _feed(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes | None]]
    ) -> None:
        """Read chunks and stamp each with its delivery time; b"" is EOF, None a reset."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data: bytes | None = await reader.read(CHUNK_BYTES)
            except OSError:
                data = None
            await queue.put((loop.time() + self._latency_s, data))
            if not data:
                return
