"""OpenSearch over HTTPS: basic auth, client certificates, CA and host name checks, SigV4.

osmem speaks neither TLS nor auth: a `TlsProxy` gives it a real TLS endpoint and an
`AuthFront` behind the proxy answers 401 to wrong credentials, or checks SigV4 signatures
with botocore for known test credentials (403 on a mismatch).
"""

from __future__ import annotations

import logging
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.https_front import AuthFront
from support.tls_endpoints import KEY_PASSWORD, AlertLosingRelay, Pki, ThreadLoop, TlsProxy

from stream_indexer.app.startup import until_ready
from stream_indexer.app.startup_errors import Step, explain
from stream_indexer.errors import ConfigError, SinkUnavailableError
from stream_indexer.opensearch.auth import lost_certificate_refusal, tls_context
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import Settings, load_settings

USER, PASSWORD = "indexer", "os-pass-83b1"
KEY_ID, SECRET, REGION = "AKIDOPENSEARCHTEST", "opensearch-test-secret-0123456789", "eu-west-1"


class HttpsCluster:
    """TLS proxy -> auth front -> osmem; `url` is the HTTPS address."""

    def __init__(self, loop: ThreadLoop, context: ssl.SSLContext, front: AuthFront) -> None:
        self.front = front
        self._loop = loop
        port = front.start(loop)
        self.proxy = TlsProxy(context, ("127.0.0.1", port)).start()
        self.url = f"https://127.0.0.1:{self.proxy.port}"

    def close(self) -> None:
        self.proxy.close()
        self.front.stop(self._loop)


@pytest.fixture(scope="module")
def basic_cluster(pki: Pki, tls_loop: ThreadLoop, opensearch_url: str) -> Iterator[HttpsCluster]:
    cluster = HttpsCluster(
        tls_loop, pki.server_context(), AuthFront(opensearch_url, basic=(USER, PASSWORD))
    )
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def mtls_cluster(pki: Pki, tls_loop: ThreadLoop, opensearch_url: str) -> Iterator[HttpsCluster]:
    context = pki.server_context(require_client_cert=True)
    cluster = HttpsCluster(tls_loop, context, AuthFront(opensearch_url, basic=(USER, PASSWORD)))
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def sigv4_cluster(pki: Pki, tls_loop: ThreadLoop, opensearch_url: str) -> Iterator[HttpsCluster]:
    front = AuthFront(opensearch_url, sigv4=(KEY_ID, SECRET, REGION, "es"))
    cluster = HttpsCluster(tls_loop, pki.server_context(), front)
    yield cluster
    cluster.close()


def os_settings(url: str, pki: Pki, **extra: Any) -> Settings:
    name = f"tls{uuid.uuid4().hex[:8]}"
    overrides: dict[str, Any] = {
        "opensearch.hosts": url,
        "opensearch.index": name,
        "opensearch.ca_certs": pki.ca_file,
        "opensearch.username": USER,
        "opensearch.password": PASSWORD,
        "opensearch.request_timeout_s": 5,
    }
    overrides.update(extra)
    return load_settings({k: v for k, v in overrides.items() if v is not None})


async def index_one(settings: Settings) -> None:
    """Start the sink (index + alias), write one document, read it back."""
    sink = OpenSearchSink(settings)
    try:
        await sink.start()
        action = {"index": {"_id": "7", "version": 3, "version_type": "external_gte"}}
        body = orjson.dumps(action) + b"\n" + orjson.dumps({"title": "over https"}) + b"\n"
        answer = await sink.bulk(body, 1)
        assert answer["errors"] is False, answer
        doc = await sink.client.get(index=settings.physical_index, id="7")
        assert doc["_source"]["title"] == "over https"
    finally:
        await sink.stop()


async def start_failure(settings: Settings) -> str:
    """Start the sink as the service does; return the one line start-up reports."""
    import asyncio

    sink = OpenSearchSink(settings)
    try:
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(until_ready("opensearch", sink.start, asyncio.Event()), 20)
    finally:
        await sink.stop()
    return str(explain(Step.OPENSEARCH, caught.value))


async def test_https_with_basic_auth(basic_cluster: HttpsCluster, pki: Pki) -> None:
    await index_one(os_settings(basic_cluster.url, pki))
    assert basic_cluster.front.accepted


async def test_wrong_credentials_get_401_and_one_line(
    basic_cluster: HttpsCluster, pki: Pki
) -> None:
    line = await start_failure(
        os_settings(basic_cluster.url, pki, **{"opensearch.password": "nope-nope"})
    )
    assert "HTTP 401" in line and "STREAM_INDEXER_OPENSEARCH__PASSWORD" in line
    assert "nope-nope" not in line


async def test_a_wrong_ca_fails_at_start_naming_the_setting(
    basic_cluster: HttpsCluster, pki: Pki
) -> None:
    settings = os_settings(basic_cluster.url, pki, **{"opensearch.ca_certs": pki.other_ca_file})
    line = await start_failure(settings)
    assert "STREAM_INDEXER_OPENSEARCH__CA_CERTS" in line and "certificate verify failed" in line
    assert "\n" not in line


async def test_a_wrong_host_name_fails_at_start(basic_cluster: HttpsCluster, pki: Pki) -> None:
    url = basic_cluster.url.replace("127.0.0.1", "localhost")
    line = await start_failure(os_settings(url, pki))
    assert "Hostname mismatch" in line and "STREAM_INDEXER_OPENSEARCH__HOSTS" in line


async def test_verify_certs_false_is_explicit_and_logged(
    basic_cluster: HttpsCluster, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    settings = os_settings(
        basic_cluster.url,
        pki,
        **{"opensearch.ca_certs": pki.other_ca_file, "opensearch.verify_certs": False},
    )
    with caplog.at_level(logging.WARNING):
        await index_one(settings)
    assert "VERIFY_CERTS=false" in caplog.text


async def test_client_certificate_with_an_encrypted_key(
    mtls_cluster: HttpsCluster, pki: Pki
) -> None:
    settings = os_settings(
        mtls_cluster.url,
        pki,
        **{
            "opensearch.client_cert": pki.client_cert,
            "opensearch.client_key": pki.client_key_encrypted,
            "opensearch.client_key_password": KEY_PASSWORD,
        },
    )
    await index_one(settings)
    line = await start_failure(os_settings(mtls_cluster.url, pki))
    assert "OpenSearch requires a TLS client certificate and none is set" in line
    assert "STREAM_INDEXER_OPENSEARCH__CLIENT_CERT" in line


@pytest.fixture(scope="module")
def tls12_mtls_cluster(
    pki: Pki, tls_loop: ThreadLoop, opensearch_url: str
) -> Iterator[HttpsCluster]:
    """A TLS 1.2-only cluster requiring a client certificate: it refuses a missing one with
    a "handshake failure" alert inside the handshake."""
    context = pki.server_context(require_client_cert=True, tls_version=ssl.TLSVersion.TLSv1_2)
    cluster = HttpsCluster(tls_loop, context, AuthFront(opensearch_url, basic=(USER, PASSWORD)))
    yield cluster
    cluster.close()


async def test_tls12_without_a_client_certificate_fails_at_start_naming_it(
    tls12_mtls_cluster: HttpsCluster, pki: Pki
) -> None:
    """TLS 1.2: the cluster's "handshake failure" alert, with no client certificate set, is
    a missing certificate (exit 3, one line), not an outage to wait for; with the
    certificate the same cluster indexes."""
    await index_one(
        os_settings(
            tls12_mtls_cluster.url,
            pki,
            **{"opensearch.client_cert": pki.client_cert, "opensearch.client_key": pki.client_key},
        )
    )
    line = await start_failure(os_settings(tls12_mtls_cluster.url, pki))
    assert "OpenSearch requires a TLS client certificate and none is set" in line
    assert "handshake failure" in line and "\n" not in line
    assert "STREAM_INDEXER_OPENSEARCH__CLIENT_CERT" in line
    assert "STREAM_INDEXER_OPENSEARCH__CLIENT_KEY" in line
    assert PASSWORD not in line


async def test_tls12_with_an_untrusted_certificate_is_not_called_missing(
    tls12_mtls_cluster: HttpsCluster, pki: Pki
) -> None:
    """With a client certificate set, the cluster's alert is about that certificate: the
    line says so instead of asking for one."""
    settings = os_settings(
        tls12_mtls_cluster.url,
        pki,
        **{
            "opensearch.client_cert": pki.untrusted_client_cert,
            "opensearch.client_key": pki.untrusted_client_key,
        },
    )
    line = await start_failure(settings)
    assert "does not trust our TLS client certificate" in line and "none is set" not in line
    assert "STREAM_INDEXER_OPENSEARCH__CLIENT_CERT" in line and "\n" not in line


@pytest.fixture(scope="module")
def lossy_mtls_cluster(
    pki: Pki, tls_loop: ThreadLoop, opensearch_url: str
) -> Iterator[tuple[HttpsCluster, AlertLosingRelay]]:
    """A TLS 1.3 cluster requiring a client certificate, behind a relay that loses its
    refusal to a reset whenever the client sends its request first."""
    context = pki.server_context(require_client_cert=True, tls_version=ssl.TLSVersion.TLSv1_3)
    cluster = HttpsCluster(tls_loop, context, AuthFront(opensearch_url, basic=(USER, PASSWORD)))
    relay = AlertLosingRelay(("127.0.0.1", cluster.proxy.port)).start()
    yield cluster, relay
    relay.close()
    cluster.close()


async def test_a_certificate_refusal_lost_to_a_reset_still_fails_at_start(
    lossy_mtls_cluster: tuple[HttpsCluster, AlertLosingRelay], pki: Pki
) -> None:
    """TLS 1.3: the cluster's "certificate required" alert raced our first request and was
    lost to a connection reset; start-up asks once more without a request and fails with
    the certificate settings, instead of waiting for a cluster that looks unreachable."""
    _, relay = lossy_mtls_cluster
    url = f"https://127.0.0.1:{relay.port}"
    for _ in range(3):
        resets = relay.resets
        line = await start_failure(os_settings(url, pki))
        assert "requires a TLS client certificate and none is set" in line and "\n" not in line
        assert "STREAM_INDEXER_OPENSEARCH__CLIENT_CERT" in line
        assert relay.resets > resets  # the request's connection was reset, alert lost


@pytest.fixture(scope="module")
def certificate_losing_relay(
    lossy_mtls_cluster: tuple[HttpsCluster, AlertLosingRelay],
) -> Iterator[AlertLosingRelay]:
    """The same TLS 1.3 cluster, behind a relay that loses its refusal of a client that
    sends a certificate (three handshake records, not two)."""
    cluster, _ = lossy_mtls_cluster
    relay = AlertLosingRelay(("127.0.0.1", cluster.proxy.port), client_certificate=True)
    yield relay.start()
    relay.close()


async def test_an_untrusted_certificate_refusal_lost_to_a_reset_still_fails_at_start(
    certificate_losing_relay: AlertLosingRelay, pki: Pki
) -> None:
    """TLS 1.3 with a client certificate from a CA the cluster does not trust: its "unknown
    ca" alert raced our first request and was lost to a reset. Start-up asks again without a
    request and says the certificate is not trusted (exit 3), instead of waiting for a
    cluster that looks unreachable or asking for a certificate that is set."""
    relay = certificate_losing_relay
    settings = os_settings(
        f"https://127.0.0.1:{relay.port}",
        pki,
        **{
            "opensearch.client_cert": pki.untrusted_client_cert,
            "opensearch.client_key": pki.untrusted_client_key,
        },
    )
    resets = relay.resets
    line = await start_failure(settings)
    assert "does not trust our TLS client certificate (tlsv1 alert unknown ca)" in line
    assert "STREAM_INDEXER_OPENSEARCH__CLIENT_CERT" in line
    assert "none is set" not in line and "\n" not in line
    assert relay.resets > resets  # the request's connection was reset, alert lost


async def test_a_cluster_that_closes_after_the_handshake_is_still_waited_for(
    pki: Pki,
) -> None:
    """A TLS 1.3 proxy whose cluster is down completes the handshake and closes, with no
    alert: that is an outage (retriable), not a certificate problem. The silent connection
    is made, and reads the close as saying nothing."""
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        down = ("127.0.0.1", int(placeholder.getsockname()[1]))
    proxy = TlsProxy(pki.server_context(tls_version=ssl.TLSVersion.TLSv1_3), down).start()
    url = f"https://127.0.0.1:{proxy.port}"
    settings = os_settings(url, pki)
    sink = OpenSearchSink(settings)
    try:
        with pytest.raises(SinkUnavailableError) as caught:
            await sink.start()
        before = proxy.connections
        context = tls_context(settings.opensearch)
        assert await lost_certificate_refusal(caught.value, [url], context, 5) is None
        assert proxy.connections == before + 1
    finally:
        await sink.stop()
        proxy.close()


def test_an_unreadable_client_key_is_a_config_error(pki: Pki) -> None:
    settings = os_settings(
        "https://127.0.0.1:9",
        pki,
        **{
            "opensearch.client_cert": pki.client_cert,
            "opensearch.client_key": pki.client_key_encrypted,
            "opensearch.client_key_password": "wrong-one",
        },
    )
    with pytest.raises(ConfigError, match="STREAM_INDEXER_OPENSEARCH__CLIENT_KEY_PASSWORD"):
        OpenSearchSink(settings)._build_client()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def sigv4_settings(url: str, pki: Pki, **extra: Any) -> Settings:
    return os_settings(
        url,
        pki,
        **{
            "opensearch.username": None,
            "opensearch.password": None,
            "opensearch.auth": "sigv4",
            "opensearch.aws_region": REGION,
            **extra,
        },
    )


@pytest.mark.parametrize("compress", [False, True])
async def test_sigv4_signs_every_request_as_sent(
    sigv4_cluster: HttpsCluster, pki: Pki, aws_env: pytest.MonkeyPatch, compress: bool
) -> None:
    front = sigv4_cluster.front
    seen = len(front.accepted)
    await index_one(
        sigv4_settings(sigv4_cluster.url, pki, **{"opensearch.http_compress": compress})
    )
    bulks = [entry for entry in front.accepted[seen:] if entry[1].endswith("/_bulk")]
    assert bulks and all(encoding == ("gzip" if compress else "") for _, _, encoding in bulks)


async def test_sigv4_with_a_wrong_secret_is_refused(
    sigv4_cluster: HttpsCluster, pki: Pki, aws_env: pytest.MonkeyPatch
) -> None:
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "another-secret-000000000000000000")
    line = await start_failure(sigv4_settings(sigv4_cluster.url, pki))
    assert "HTTP 403" in line
    assert sigv4_cluster.front.refusals[-1] == "signature does not match"
    assert "another-secret" not in line


def test_sigv4_needs_a_region() -> None:
    with pytest.raises(ConfigError, match="STREAM_INDEXER_OPENSEARCH__AWS_REGION"):
        load_settings({"opensearch.auth": "sigv4"})
