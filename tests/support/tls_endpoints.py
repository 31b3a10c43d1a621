"""Test support: real TLS endpoints in front of the local servers, which speak none.

- `Pki`: a throwaway CA (trustme) with a server certificate for 127.0.0.1 only (so
  `localhost` is a wrong host name), a client certificate, its key also password-encrypted,
  and a second CA that signed nothing we serve (a wrong CA) but a client certificate no
  server here trusts.
- `TlsProxy`: a TLS-terminating TCP proxy, optionally demanding a client certificate and,
  for Kafka, a SASL exchange (`SaslGate`), for Postgres its SSLRequest preamble (the
  embedded PostgreSQL is built without SSL), before it splices the connection upstream.
  tansu has no SASL usable with memory storage, so the gate plays the broker's SASL part:
  a client that passes it talks to the real broker through the same connection.
  It runs on threads with blocking sockets, not asyncio: asyncio's server side drops the
  TLS alert it should send when it refuses a client certificate, and real servers send it.
- `ThreadLoop`: runs asyncio servers (the HTTP front in `https_front`) on their own event
  loop thread, so one endpoint can serve every test of a module whatever loop each runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trustme
from cryptography.hazmat.primitives import serialization

KEY_PASSWORD = "client-key-pass-7f3a"
T = TypeVar("T")


class Pki:
    """CA, server and client certificates as PEM files under `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("127.0.0.1")
        self.client = self.ca.issue_cert("postgres", common_name="postgres")
        self.ca_file = self._write("ca.pem", self.ca.cert_pem.bytes())
        other_ca = trustme.CA()
        self.other_ca_file = self._write("other-ca.pem", other_ca.cert_pem.bytes())
        untrusted = other_ca.issue_cert("postgres", common_name="postgres")
        self.untrusted_client_cert = self._write(
            "untrusted-client.pem", b"".join(blob.bytes() for blob in untrusted.cert_chain_pems)
        )
        self.untrusted_client_key = self._write(
            "untrusted-client.key", untrusted.private_key_pem.bytes()
        )
        self.server_cert = self._write(
            "server.pem", b"".join(blob.bytes() for blob in self.server.cert_chain_pems)
        )
        self.server_key = self._write("server.key", self.server.private_key_pem.bytes())
        self.client_cert = self._write(
            "client.pem", b"".join(blob.bytes() for blob in self.client.cert_chain_pems)
        )
        self.client_key = self._write("client.key", self.client.private_key_pem.bytes())
        key = serialization.load_pem_private_key(self.client.private_key_pem.bytes(), None)
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
        self.client_key_encrypted = self._write("client-encrypted.key", encrypted)

    def _write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)

    def server_context(
        self, *, require_client_cert: bool = False, tls_version: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """`tls_version` pins the one version the server speaks."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if tls_version is not None:
            context.minimum_version = context.maximum_version = tls_version
        self.server.configure_cert(context)
        if require_client_cert:
            self.ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class ThreadLoop:
    """An event loop on a daemon thread; `run(coro)` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# -- Kafka SASL, the broker's side ---------------------------------------------------------

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58


@dataclass
class SaslGate:
    """Answers SaslHandshake and SaslAuthenticate as a broker would, then lets the rest of
    the connection through. `plain` holds the accepted user and password; `oauth` checks an
    OAUTHBEARER token and returns None when it accepts it, or the reason it does not."""

    plain: tuple[str, str] | None = None
    oauth: Callable[[str], str | None] | None = None
    #: every OAUTHBEARER token received, accepted or not
    tokens: list[str] = field(default_factory=list)

    @property
    def mechanisms(self) -> list[str]:
        return (["PLAIN"] if self.plain else []) + (["OAUTHBEARER"] if self.oauth else [])

    def authenticate(self, sock: socket.socket, upstream: socket.socket) -> bool:
        frame = _frame(sock)
        api_key, version, correlation, body = _request(frame)
        while api_key == API_VERSIONS:  # allowed before authentication, as on Kafka
            _send(upstream, frame)
            _send(sock, _with_sasl_apis(_frame(upstream), version))
            frame = _frame(sock)
            api_key, version, correlation, body = _request(frame)
        if api_key != SASL_HANDSHAKE:
            return False  # a client that skips SASL gets nothing
        mechanism = _string(body, 0)
        known = mechanism in self.mechanisms
        listed = b"".join(_pack_string(m) for m in self.mechanisms)
        error = 0 if known else UNSUPPORTED_SASL_MECHANISM
        _send(sock, struct.pack(">ihi", correlation, error, len(self.mechanisms)) + listed)
        if not known:
            return False
        if version == 0:  # pre-1.0 framing: the token travels without a request header
            reason = self._check(mechanism, _frame(sock))
            if reason is None:
                _send(sock, b"")
            return reason is None
        api_key, auth_version, correlation, body = _request(_frame(sock))
        if api_key != SASL_AUTHENTICATE or auth_version > 1:
            return False
        (length,) = struct.unpack_from(">i", body)
        reason = self._check(mechanism, body[4 : 4 + length])
        error = 0 if reason is None else SASL_AUTHENTICATION_FAILED
        answer = struct.pack(">ih", correlation, error)
        answer += _pack_string(reason) if reason is not None else struct.pack(">h", -1)
        answer += struct.pack(">i", 0) + (struct.pack(">q", 0) if auth_version >= 1 else b"")
        _send(sock, answer)
        return reason is None

    def _check(self, mechanism: str, auth_bytes: bytes) -> str | None:
        if mechanism == "PLAIN":
            assert self.plain is not None
            _, user, password = auth_bytes.decode().split("\0")
            return None if (user, password) == self.plain else "wrong user name or password"
        assert self.oauth is not None
        message = auth_bytes.decode()
        if not message.startswith("n,,\x01auth=Bearer ") or not message.endswith("\x01\x01"):
            return "malformed OAUTHBEARER client message"
        token = message.split("\x01")[1].removeprefix("auth=Bearer ")
        self.tokens.append(token)
        return self.oauth(token)


def _with_sasl_apis(response: bytes, version: int) -> bytes:
    """The broker's ApiVersions v0 answer, listing the SASL requests the gate answers."""
    if version != 0:
        return response
    correlation, error, count = struct.unpack_from(">ihi", response)
    keys = {struct.unpack_from(">h", response, 10 + 6 * i)[0] for i in range(count)}
    extra = [struct.pack(">hhh", key, 0, 1) for key in (SASL_HANDSHAKE, SASL_AUTHENTICATE)]
    extra = [entry for entry in extra if struct.unpack_from(">h", entry)[0] not in keys]
    head = struct.pack(">ihi", correlation, error, count + len(extra))
    return head + response[10 : 10 + 6 * count] + b"".join(extra) + response[10 + 6 * count :]


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed mid-frame")
        data += chunk
    return data


def _frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", _exactly(sock, 4))
    return _exactly(sock, size)


def _request(frame: bytes) -> tuple[int, int, int, bytes]:
    """api key, version, correlation id and body of a request with header v1."""
    api_key, version, correlation = struct.unpack_from(">hhi", frame)
    (client_id_length,) = struct.unpack_from(">h", frame, 8)
    return api_key, version, correlation, frame[10 + max(client_id_length, 0) :]


def _string(data: bytes, offset: int) -> str:
    (length,) = struct.unpack_from(">h", data, offset)
    return data[offset + 2 : offset + 2 + length].decode()


def _pack_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">i", len(payload)) + payload)


# -- the proxy -------------------------------------------------------------------------------


def _serve_each_connection(listener: socket.socket, serve: Callable[[socket.socket], None]) -> None:
    """Accept until `listener` is closed, serving each connection on its own thread."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


class TlsProxy:
    """TLS on `port` (bound at construction, so a broker can advertise it), plain TCP to
    `upstream`. `connections` counts client connections whose TLS handshake succeeded."""

    def __init__(
        self,
        context: ssl.SSLContext,
        upstream: tuple[str, int] | None = None,
        *,
        gate: SaslGate | None = None,
        postgres: bool = False,
    ) -> None:
        self._context = context
        #: speak Postgres's TLS preamble (SSLRequest, answered `S`) and refuse plaintext
        self.postgres = postgres
        self.upstream = upstream
        self.gate = gate
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TlsProxy:
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        _serve_each_connection(self._listener, self._serve)

    def _serve(self, conn: socket.socket) -> None:
        opened = [conn]
        self._track(conn)
        try:
            if self.postgres and not _postgres_wants_tls(conn):
                return
            tls = self._context.wrap_socket(conn, server_side=True)  # refusals send an alert
            opened.append(tls)
            self._track(tls)
            self.connections += 1
            assert self.upstream is not None
            upstream = socket.create_connection(self.upstream)
            opened.append(upstream)
            self._track(upstream)
            if self.gate is not None and not self.gate.authenticate(tls, upstream):
                return
            _splice(tls, upstream)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._open.difference_update(opened)
            for sock in reversed(opened):
                sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)


_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


def _postgres_wants_tls(conn: socket.socket) -> bool:
    """Read the client's SSLRequest and answer `S`, as a server with `ssl=on` does; a client
    that starts in plaintext is refused, as `hostnossl ... reject` does."""
    while True:
        length, code = struct.unpack(">ii", _exactly(conn, 8))
        if length == 8 and code == _GSSENC_REQUEST:
            conn.sendall(b"N")  # no GSSAPI encryption here: the client goes on with TLS
            continue
        if length == 8 and code == _SSL_REQUEST:
            conn.sendall(b"S")
            return True
        return False


def _splice(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy both ways on one thread (an SSL socket must not be used by two threads at once)."""
    while True:
        ready = [tls] if tls.pending() else select.select([tls, plain], [], [])[0]
        for source in ready:
            data = source.recv(64 * 1024)
            if not data:
                return
            (plain if source is tls else tls).sendall(data)


# -- a TLS 1.3 refusal whose alert is lost ---------------------------------------------------

_HANDSHAKE, _APPLICATION_DATA = 22, 23


class AlertLosingRelay:
    """A TCP relay in front of a TLS 1.3 server that requires a client certificate: it loses
    the server's refusal whenever the client speaks first.

    Under TLS 1.3 the client's side of the handshake is done before the server judges its
    certificate; a request the client sends meanwhile makes the server's close a reset, and
    its "certificate required" or "unknown ca" alert is lost (a race on real servers). Here
    the race always goes that way: once the client has sent its last handshake records, any
    further record from it resets the connection, and the server's verdict is held back
    `hold_s` for the client to speak first. A client that stays silent gets the verdict.
    Those records are encrypted, so the relay is told how many to expect: a client without
    a certificate sends two (an empty Certificate, Finished), one with a certificate three
    (Certificate, CertificateVerify, Finished): `client_certificate`. `resets` counts the
    connections reset this way."""

    def __init__(
        self, upstream: tuple[str, int], hold_s: float = 1.0, *, client_certificate: bool = False
    ) -> None:
        self.upstream = upstream
        self.hold_s = hold_s
        #: encrypted records the client's side of the handshake ends with
        self.handshake_records = 3 if client_certificate else 2
        self.resets = 0
        self.alerts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]

    def start(self) -> AlertLosingRelay:
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept_loop(self) -> None:
        _serve_each_connection(self._listener, self._serve)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        records = _RecordCounter(self.handshake_records)
        sources = [client, upstream]
        held = b""
        try:
            while True:
                ready = select.select(sources, [], [], self.hold_s if held else None)[0]
                if not ready:  # the client stayed silent: let the verdict through
                    client.sendall(held)
                    self.alerts += 1
                    held = b""
                    if upstream not in sources:
                        return
                    continue
                if client in ready:
                    data = client.recv(64 * 1024)
                    if not data:
                        return
                    if records.feed(data) > self.handshake_records:  # after its Finished
                        self.resets += 1
                        client.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        return
                    upstream.sendall(data)
                if upstream in ready:
                    try:
                        data = upstream.recv(64 * 1024)
                    except ConnectionResetError:  # a refusing server closes with unread data
                        data = b""
                    if not data:
                        if not held:
                            return
                        sources.remove(upstream)  # the verdict waits for the client
                    elif records.finished:
                        held += data
                    else:
                        client.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()


class _RecordCounter:
    """Counts the encrypted records in one direction of a TLS 1.3 stream."""

    def __init__(self, handshake_records: int) -> None:
        self._buffer = b""
        self.encrypted = 0
        self._handshake_records = handshake_records

    @property
    def finished(self) -> bool:
        """The client has sent its Finished (the last of its encrypted handshake records)."""
        return self.encrypted >= self._handshake_records

    def feed(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= 5:
            kind, _, length = struct.unpack_from(">BHH", self._buffer)
            if len(self._buffer) < 5 + length:
                break
            if kind == _APPLICATION_DATA:
                self.encrypted += 1
            self._buffer = self._buffer[5 + length :]
        return self.encrypted
