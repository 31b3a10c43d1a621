"""Which OpenSearch connection errors may hide a TLS 1.3 certificate refusal (and are worth
one more, silent, connection): a reset or close of an open connection, not a refused one."""

from __future__ import annotations

import ssl

from aiohttp import ClientConnectorError, ClientOSError, ServerDisconnectedError
from aiohttp.client_reqrep import ConnectionKey
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout

from stream_indexer.errors import SinkUnavailableError
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


async def test_without_tls_or_without_a_reset_nothing_is_probed() -> None:
    reset = _wrapped(ServerDisconnectedError())
    assert await lost_certificate_refusal(reset, ["http://127.0.0.1:9"], None, 1) is None
    context = ssl.create_default_context()
    timeout = ConnectionTimeout("TIMEOUT", "timed out", TimeoutError())
    # a probe of this address would be refused, the question is never asked
    assert await lost_certificate_refusal(timeout, ["https://127.0.0.1:9"], context, 1) is None
