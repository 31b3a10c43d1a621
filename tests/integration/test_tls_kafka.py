"""Kafka over TLS, mTLS, SASL_SSL and Amazon MSK IAM, against tansu behind a TLS proxy.

tansu advertises the proxy's address, so every connection a client makes (bootstrap and
broker) is TLS. tansu has no SASL usable with memory storage: for SASL_SSL the proxy answers
SaslHandshake / SaslAuthenticate itself (`SaslGate`) and then splices the connection to the
broker, so a client that authenticates goes on to produce and consume for real.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from support.tls_endpoints import KEY_PASSWORD, Pki, SaslGate, TlsProxy

from stream_indexer.app.startup_errors import Step, explain
from stream_indexer.app.topics import ensure_topic
from stream_indexer.devtools.devstack.tansu import TansuBroker
from stream_indexer.errors import ClientCertificateRequiredError, ConfigError
from stream_indexer.kafka_clients import connection_kwargs, consumer_kwargs, create_producer
from stream_indexer.kafka_security import check_tls, ssl_context
from stream_indexer.settings import Settings, load_settings

AWS_KEY_ID = "AKIDSTREAMINDEXERTEST"
AWS_SECRET = "test-secret-key-for-msk-iam-0123456789"
REGION = "eu-west-1"
SASL_USER, SASL_PASSWORD = "indexer", "sasl-pass-2c9d"


def msk_token_problem(token: str) -> str | None:
    """The broker's check of an MSK IAM token: a base64url presigned URL for
    `kafka-cluster:Connect`, whose SigV4 signature botocore recomputes for the known key."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    if parts.netloc != f"kafka.{REGION}.amazonaws.com" or query.get("Action") != (
        "kafka-cluster:Connect"
    ):
        return "not a kafka-cluster:Connect URL for this region"
    if not query.get("X-Amz-Credential", "").startswith(f"{AWS_KEY_ID}/"):
        return "unknown access key"
    signer = SigV4QueryAuth(Credentials(AWS_KEY_ID, AWS_SECRET), "kafka-cluster", REGION, 900)
    request = AWSRequest(
        method="GET", url=f"https://{parts.netloc}/", params={"Action": "kafka-cluster:Connect"}
    )
    request.context["timestamp"] = query["X-Amz-Date"]
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return None if expected == query.get("X-Amz-Signature") else "signature does not match"


class TlsBroker:
    """tansu behind a `TlsProxy`; `bootstrap` is the proxy's address."""

    def __init__(self, context: ssl.SSLContext, logs: Path, gate: SaslGate | None = None) -> None:
        self.proxy = TlsProxy(context, gate=gate)
        self.broker = TansuBroker(
            logs / f"tansu-{uuid.uuid4().hex[:6]}.log",
            advertised_url=f"tcp://127.0.0.1:{self.proxy.port}",
        )
        host, _, port = self.broker.start().partition(":")
        self.proxy.upstream = (host, int(port))
        self.proxy.start()
        self.bootstrap = f"127.0.0.1:{self.proxy.port}"
        self.port = self.proxy.port

    def close(self) -> None:
        self.proxy.close()
        self.broker.stop()


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    broker = TlsBroker(pki.server_context(), tmp_path_factory.mktemp("tansu"))
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def mtls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """Requires a client certificate, TLS 1.3 only: it judges the certificate after the
    client's side of the handshake is done."""
    context = pki.server_context(require_client_cert=True, tls_version=ssl.TLSVersion.TLSv1_3)
    broker = TlsBroker(context, tmp_path_factory.mktemp("tansu"))
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def mtls12_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """Requires a client certificate, TLS 1.2 only: it refuses one in the handshake itself."""
    context = pki.server_context(require_client_cert=True, tls_version=ssl.TLSVersion.TLSv1_2)
    broker = TlsBroker(context, tmp_path_factory.mktemp("tansu"))
    yield broker
    broker.close()


@pytest.fixture(params=["tls1.3", "tls1.2"])
def any_mtls_broker(request: pytest.FixtureRequest) -> TlsBroker:
    name = "mtls_broker" if request.param == "tls1.3" else "mtls12_broker"
    broker: TlsBroker = request.getfixturevalue(name)
    return broker


@pytest.fixture(scope="module")
def sasl_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    gate = SaslGate(plain=(SASL_USER, SASL_PASSWORD), oauth=msk_token_problem)
    broker = TlsBroker(pki.server_context(), tmp_path_factory.mktemp("tansu"), gate=gate)
    yield broker
    broker.close()


def kafka_settings(bootstrap: str, pki: Pki, **extra: Any) -> Settings:
    return load_settings(
        {
            "kafka.bootstrap_servers": bootstrap,
            "kafka.security_protocol": "SSL",
            "kafka.ssl_cafile": pki.ca_file,
            "kafka.enable_idempotence": False,
            "kafka.group_id": f"g{uuid.uuid4().hex[:6]}",
            **extra,
        }
    )


def admin_kwargs(settings: Settings) -> dict[str, object]:
    return {k: v for k, v in connection_kwargs(settings.kafka).items() if k != "bootstrap_servers"}


async def roundtrip(settings: Settings) -> bytes:
    """Create a topic, produce one record and read it back, all with `settings`."""
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    await ensure_topic(
        settings.kafka.bootstrap_servers, topic, partitions=1, client_kwargs=admin_kwargs(settings)
    )
    producer = create_producer(settings, "dlq")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over-tls", key=b"1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert record.value is not None
    return bytes(record.value)


async def test_ssl_produces_and_consumes_through_tls_only(tls_broker: TlsBroker, pki: Pki) -> None:
    before = tls_broker.proxy.connections
    assert await roundtrip(kafka_settings(tls_broker.bootstrap, pki)) == b"over-tls"
    assert tls_broker.proxy.connections > before


async def test_a_wrong_ca_fails_at_start_naming_the_setting(
    tls_broker: TlsBroker, pki: Pki
) -> None:
    settings = kafka_settings(tls_broker.bootstrap, pki, **{"kafka.ssl_cafile": pki.other_ca_file})
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        await ensure_topic(
            tls_broker.bootstrap, "never", partitions=1, client_kwargs=admin_kwargs(settings)
        )
    line = str(explain(Step.DLQ_TOPIC, caught.value))
    assert "STREAM_INDEXER_KAFKA__SSL_CAFILE" in line and "certificate verify failed" in line
    assert "\n" not in line


async def test_a_wrong_host_name_fails_unless_hostname_checks_are_off(
    tls_broker: TlsBroker, pki: Pki
) -> None:
    """The certificate names 127.0.0.1 only; `localhost` is the same broker, wrong name."""
    bootstrap = f"localhost:{tls_broker.port}"
    settings = kafka_settings(bootstrap, pki)
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        await ensure_topic(bootstrap, "never", partitions=1, client_kwargs=admin_kwargs(settings))
    line = str(explain(Step.DLQ_TOPIC, caught.value))
    assert "Hostname mismatch" in line and "STREAM_INDEXER_KAFKA__BOOTSTRAP_SERVERS" in line
    relaxed = kafka_settings(bootstrap, pki, **{"kafka.ssl_check_hostname": False})
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    assert await ensure_topic(bootstrap, topic, partitions=1, client_kwargs=admin_kwargs(relaxed))


async def test_mtls_with_a_password_protected_key(mtls_broker: TlsBroker, pki: Pki) -> None:
    settings = kafka_settings(
        mtls_broker.bootstrap,
        pki,
        **{
            "kafka.ssl_certfile": pki.client_cert,
            "kafka.ssl_keyfile": pki.client_key_encrypted,
            "kafka.ssl_key_password": KEY_PASSWORD,
        },
    )
    assert await roundtrip(settings) == b"over-tls"


#: connections per refusal test: a refusal that depends on a race shows up within a few
REPEATS = 10


async def _refusal_lines(settings: Settings, error: type[BaseException]) -> list[str]:
    """`REPEATS` start-up checks against `settings`' broker, each raising `error`: the lines
    start-up would print for them."""
    lines = []
    for _ in range(REPEATS):
        with pytest.raises(error) as caught:
            await ensure_topic(
                settings.kafka.bootstrap_servers,
                "never",
                partitions=1,
                client_kwargs=admin_kwargs(settings),
            )
        lines.append(str(explain(Step.DLQ_TOPIC, caught.value)))
    return lines


async def test_mtls_without_a_client_certificate_fails_at_start(
    any_mtls_broker: TlsBroker, pki: Pki
) -> None:
    """Under TLS 1.3 the refusal comes after the handshake and its alert can be lost; under
    TLS 1.2 it is a "handshake failure" alert. Either way: one line naming the setting."""
    settings = kafka_settings(any_mtls_broker.bootstrap, pki)
    for line in await _refusal_lines(settings, ClientCertificateRequiredError):
        assert "requires a TLS client certificate" in line and "\n" not in line
        assert "STREAM_INDEXER_KAFKA__SSL_CERTFILE" in line
    producer = create_producer(settings, "dlq", request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


async def test_mtls_with_an_untrusted_client_certificate_fails_at_start(
    any_mtls_broker: TlsBroker, pki: Pki
) -> None:
    settings = kafka_settings(
        any_mtls_broker.bootstrap,
        pki,
        **{
            "kafka.ssl_certfile": pki.untrusted_client_cert,
            "kafka.ssl_keyfile": pki.untrusted_client_key,
        },
    )
    for line in await _refusal_lines(settings, ssl.SSLError):
        assert "does not trust our TLS client certificate" in line and "\n" not in line
        assert "STREAM_INDEXER_KAFKA__SSL_CERTFILE" in line


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        return int(placeholder.getsockname()[1])


async def test_a_broker_that_is_down_is_no_certificate_problem(pki: Pki) -> None:
    """No client certificate, and nothing listening, or a TLS 1.3 proxy that completes the
    handshake and closes because its broker is down: the check leaves both to the clients,
    which wait for the broker as for any outage."""
    settings = kafka_settings("127.0.0.1:9", pki)
    context = ssl_context(settings.kafka)
    assert context is not None
    await check_tls(f"127.0.0.1:{_free_port()}", context, timeout_s=5)
    proxy = TlsProxy(
        pki.server_context(tls_version=ssl.TLSVersion.TLSv1_3), ("127.0.0.1", _free_port())
    ).start()
    try:
        await check_tls(f"127.0.0.1:{proxy.port}", context, timeout_s=5)
        assert proxy.connections >= 1
    finally:
        proxy.close()


def test_a_wrong_key_password_is_a_config_error_naming_it(pki: Pki) -> None:
    settings = kafka_settings(
        "127.0.0.1:9",
        pki,
        **{
            "kafka.ssl_certfile": pki.client_cert,
            "kafka.ssl_keyfile": pki.client_key_encrypted,
            "kafka.ssl_key_password": "not-the-password",
        },
    )
    with pytest.raises(ConfigError, match="STREAM_INDEXER_KAFKA__SSL_KEY_PASSWORD") as caught:
        connection_kwargs(settings.kafka)
    assert "not-the-password" not in str(caught.value)


async def test_sasl_ssl_plain(sasl_broker: TlsBroker, pki: Pki) -> None:
    good = kafka_settings(
        sasl_broker.bootstrap,
        pki,
        **{
            "kafka.security_protocol": "SASL_SSL",
            "kafka.sasl_mechanism": "PLAIN",
            "kafka.sasl_username": SASL_USER,
            "kafka.sasl_password": SASL_PASSWORD,
        },
    )
    assert await roundtrip(good) == b"over-tls"
    bad = kafka_settings(
        sasl_broker.bootstrap,
        pki,
        **{
            "kafka.security_protocol": "SASL_SSL",
            "kafka.sasl_mechanism": "PLAIN",
            "kafka.sasl_username": SASL_USER,
            "kafka.sasl_password": "wrong-password",
        },
    )
    producer = create_producer(bad, "dlq", request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Known test credentials through the standard chain's first link (the environment)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def msk_settings(bootstrap: str, pki: Pki) -> Settings:
    return kafka_settings(
        bootstrap,
        pki,
        **{
            "kafka.security_protocol": "SASL_SSL",
            "kafka.sasl_mechanism": "OAUTHBEARER",
            "kafka.aws_region": REGION,
        },
    )


async def test_msk_iam_sends_a_signed_token_and_then_talks_to_the_broker(
    sasl_broker: TlsBroker, pki: Pki, aws_env: pytest.MonkeyPatch
) -> None:
    gate = sasl_broker.proxy.gate
    assert gate is not None
    seen = len(gate.tokens)
    assert await roundtrip(msk_settings(sasl_broker.bootstrap, pki)) == b"over-tls"
    tokens = gate.tokens[seen:]
    assert tokens and all(msk_token_problem(token) is None for token in tokens)


async def test_msk_iam_with_a_wrong_secret_is_refused(
    sasl_broker: TlsBroker, pki: Pki, aws_env: pytest.MonkeyPatch
) -> None:
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "a-different-secret-key-0000000000000000")
    gate = sasl_broker.proxy.gate
    assert gate is not None
    seen = len(gate.tokens)
    producer = create_producer(
        msk_settings(sasl_broker.bootstrap, pki), "dlq", request_timeout_ms=5000
    )
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    assert [msk_token_problem(t) for t in gate.tokens[seen:]][:1] == ["signature does not match"]


async def _run_line_naming(
    setting: str, bootstrap: str, cafile: str, topic_factory: Any, pg_dsn: str, settings_for: Any
) -> str:
    """Run the whole start-up against `bootstrap` (OpenSearch and Postgres are fine): it
    must exit 3 with exactly one line naming `setting`, which is returned."""
    from support.pipeline import prepare_pipeline, settings_env
    from test_startup_failures import _run_indexer

    from stream_indexer.app.startup_errors import EXIT_STARTUP_FAILED

    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    settings = settings_for(
        topic,
        **{
            "kafka.bootstrap_servers": bootstrap,
            "kafka.security_protocol": "SSL",
            "kafka.ssl_cafile": cafile,
        },
    )
    code, _, err = await _run_indexer(settings_env(settings), within_s=60)
    assert code == EXIT_STARTUP_FAILED, err
    lines = [line for line in err.splitlines() if f"STREAM_INDEXER_KAFKA__{setting}" in line]
    assert len(lines) == 1, err
    return lines[0]


async def test_run_with_a_wrong_kafka_ca_exits_3_with_one_line(
    tls_broker: TlsBroker, pki: Pki, topic_factory: Any, pg_dsn: str, settings_for: Any
) -> None:
    """Kafka's certificate is refused: the process says which setting to fix instead of
    waiting forever."""
    line = await _run_line_naming(
        "SSL_CAFILE", tls_broker.bootstrap, pki.other_ca_file, topic_factory, pg_dsn, settings_for
    )
    assert "certificate verify failed" in line


async def test_run_without_the_client_certificate_a_broker_requires_exits_3_with_one_line(
    mtls12_broker: TlsBroker, pki: Pki, topic_factory: Any, pg_dsn: str, settings_for: Any
) -> None:
    """TLS 1.2, where aiokafka alone would only ever say "Unable to bootstrap" and wait."""
    line = await _run_line_naming(
        "SSL_CERTFILE", mtls12_broker.bootstrap, pki.ca_file, topic_factory, pg_dsn, settings_for
    )
    assert "requires a TLS client certificate" in line
