"""Which OpenSearch connection errors may hide a TLS 1.3 certificate refusal (and are worth
one more, silent, connection): a reset or close of an open connection, not a refused one."""

from __future__ import annotations

import ssl

import pytest
from aiohttp import ClientConnectorError, ClientOSError, ServerDisconnectedError
from aiohttp.client_reqrep import ConnectionKey
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout

from stream_indexer.errors import SinkUnavailableError
from stream_indexer.opensearch import auth
from stream_indexer.opensearch.auth import _lost_connection, lost_certificate_refusal


def _wrapped(inner: BaseException) -> SinkUnavailableError:
    """As the sink raises it: opensearch-py keeps aiohttp's error in `.info`."""
    error = OSConnectionError("N/A", str(inner), inner)
    wrapper = SinkUnavailableError("cannot prepare index")
    wrapper.__cause__ = error
    return wrapper


def test_a_reset_or_a_server_disconnect_may_hide_a_refusal() -> None:
    reset = ClientOSError(104, "Connection reset by peer")
    reset.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    assert _lost_connection(_wrapped(reset))
    assert _lost_connection(_wrapped(ServerDisconnectedError()))


def test_a_refused_or_timed_out_connection_says_nothing_about_certificates() -> None:
    key = ConnectionKey("127.0.0.1", 9, True, True, None, None, None)
    refused = ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))
    assert not _lost_connection(_wrapped(refused))
    assert not _lost_connection(ConnectionTimeout("TIMEOUT", "timed out", TimeoutError()))


class _Probes:
    """Stands in for `tls.silent_verdict`: records each host asked, ends as told."""

    def __init__(self, ended: OSError | None) -> None:
        self.ended = ended
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int, *_: object, **__: object) -> OSError | None:
        self.asked.append((host, port))
        return self.ended


def _alert(reason: str) -> ssl.SSLError:
    alert = ssl.SSLError(1, f"[SSL: {reason}] alert")
    alert.reason = reason
    return alert


async def test_a_reset_asks_each_https_host_once_and_returns_its_alert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alert = _alert("TLSV13_ALERT_CERTIFICATE_REQUIRED")
    probes = _Probes(alert)
    monkeypatch.setattr(auth, "silent_verdict", probes)
    hosts = ["https://a.example:9200", "http://b.example:9200", "https://c.example"]
    context = ssl.create_default_context()
    reset = _wrapped(ServerDisconnectedError())
    assert await lost_certificate_refusal(reset, hosts, context, 1) is alert
    assert probes.asked == [("a.example", 9200), ("c.example", 443)]


async def test_silence_or_a_close_without_alert_is_no_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = ssl.create_default_context()
    reset = _wrapped(ServerDisconnectedError())
    for ended in (None, ConnectionResetError(104, "reset"), ssl.SSLEOFError(8, "EOF")):
        monkeypatch.setattr(auth, "silent_verdict", _Probes(ended))
        assert await lost_certificate_refusal(reset, ["https://a.example"], context, 1) is None


async def test_without_tls_or_without_a_reset_nothing_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes = _Probes(_alert("TLSV13_ALERT_CERTIFICATE_REQUIRED"))
    monkeypatch.setattr(auth, "silent_verdict", probes)
    reset = _wrapped(ServerDisconnectedError())
    assert await lost_certificate_refusal(reset, ["http://127.0.0.1:9"], None, 1) is None
    context = ssl.create_default_context()
    timeout = ConnectionTimeout("TIMEOUT", "timed out", TimeoutError())
    assert await lost_certificate_refusal(timeout, ["https://127.0.0.1:9"], context, 1) is None
    assert probes.asked == []
