"""When an OpenSearch connection error means "the cluster wants a client certificate and
none is set": only with `OPENSEARCH__CLIENT_CERT` unset, and only for a certificate alert."""

from __future__ import annotations

import ssl

from aiohttp import ClientConnectorError, ClientConnectorSSLError
from aiohttp.client_reqrep import ConnectionKey
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from stream_indexer.errors import ClientCertificateRequiredError
from stream_indexer.opensearch.auth import missing_client_certificate
from stream_indexer.settings import OpenSearchSettings, load_settings

_KEY = ConnectionKey("127.0.0.1", 9200, True, True, None, None, None)


def _settings(**extra: str) -> OpenSearchSettings:
    overrides = {"opensearch.hosts": "https://127.0.0.1:9200", **extra}
    return load_settings(overrides).opensearch


def _as_opensearch_raises(inner: OSError) -> OSConnectionError:
    """opensearch-py's error around aiohttp's, as `ensure_index` sees it (the chain of
    causes aside: the wrappers keep what they wrap in `.info` and `.os_error`)."""
    wrapper = ClientConnectorSSLError(_KEY, inner)
    return OSConnectionError("N/A", str(wrapper), wrapper)


def _alert(reason: str) -> ssl.SSLError:
    alert = ssl.SSLError(1, f"[SSL: {reason}] alert")
    alert.reason = reason
    return alert


def test_a_tls12_handshake_failure_without_a_certificate_names_the_settings() -> None:
    error = _as_opensearch_raises(_alert("SSLV3_ALERT_HANDSHAKE_FAILURE"))
    missing = missing_client_certificate(error, _settings())
    assert isinstance(missing, ClientCertificateRequiredError)
    text = str(missing)
    assert "sslv3 alert handshake failure" in text
    assert "STREAM_INDEXER_OPENSEARCH__CLIENT_CERT" in text
    assert "STREAM_INDEXER_OPENSEARCH__CLIENT_KEY" in text


def test_with_a_certificate_set_the_alert_is_not_read_as_a_missing_one() -> None:
    """With a certificate, "handshake failure" may mean no common cipher or version."""
    error = _as_opensearch_raises(_alert("SSLV3_ALERT_HANDSHAKE_FAILURE"))
    settings = _settings(**{"opensearch.client_cert": "/etc/tls/client.pem"})
    assert missing_client_certificate(error, settings) is None


def test_an_outage_is_no_missing_certificate() -> None:
    refused = ClientConnectorError(_KEY, ConnectionRefusedError(111, "Connection refused"))
    error = OSConnectionError("N/A", str(refused), refused)
    assert missing_client_certificate(error, _settings()) is None
    assert missing_client_certificate(TimeoutError(), _settings()) is None
    eof = _as_opensearch_raises(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert missing_client_certificate(eof, _settings()) is None
