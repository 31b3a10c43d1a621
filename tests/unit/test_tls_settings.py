"""TLS and auth settings without a server: validation, secrets masked, one context builder
shared by every Kafka client, and which failures count as certificate refusals."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from stream_indexer.app.startup import _retriable
from stream_indexer.errors import ConfigError
from stream_indexer.kafka_clients import (
    connection_kwargs,
    consumer_kwargs,
    library_producer_kwargs,
    producer_kwargs,
)
from stream_indexer.kafka_security import MskIamTokenProvider
from stream_indexer.masking import MASK, mask_text
from stream_indexer.opensearch.auth import client_options
from stream_indexer.settings import load_settings, masked_dump
from stream_indexer.tls import tls_failure, wants_client_certificate


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(trustme.CA().cert_pem.bytes())
    return str(path)


def test_every_kafka_client_gets_the_same_tls(ca_file: str) -> None:
    """Service, DLQ tools, `produce` and the outbox relay all build from connection_kwargs."""
    settings = load_settings(
        {
            "kafka.security_protocol": "SSL",
            "kafka.ssl_cafile": ca_file,
            "producer.enable_idempotence": False,
            "producer.acks": "1",
        }
    )
    built = [
        connection_kwargs(settings.kafka),
        consumer_kwargs(settings),
        producer_kwargs(settings, purpose="dlq"),
        library_producer_kwargs(settings, purpose="outbox-relay"),
    ]
    for kwargs in built:
        context = kwargs["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_plaintext_gets_no_context() -> None:
    assert "ssl_context" not in connection_kwargs(load_settings().kafka)


def test_a_missing_ca_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    settings = load_settings(
        {"kafka.security_protocol": "SSL", "kafka.ssl_cafile": str(tmp_path / "missing.pem")}
    )
    with pytest.raises(ConfigError, match="STREAM_INDEXER_KAFKA__SSL_CAFILE"):
        connection_kwargs(settings.kafka)


def test_msk_iam_needs_a_region_and_no_password() -> None:
    with pytest.raises(ConfigError, match="STREAM_INDEXER_KAFKA__AWS_REGION"):
        load_settings(
            {"kafka.security_protocol": "SASL_SSL", "kafka.sasl_mechanism": "OAUTHBEARER"}
        )
    settings = load_settings(
        {
            "kafka.security_protocol": "SASL_SSL",
            "kafka.sasl_mechanism": "OAUTHBEARER",
            "kafka.aws_region": "us-east-1",
        }
    )
    kwargs = connection_kwargs(settings.kafka)
    assert isinstance(kwargs["sasl_oauth_token_provider"], MskIamTokenProvider)
    assert "sasl_plain_password" not in kwargs


def test_sigv4_settings() -> None:
    with pytest.raises(ConfigError, match="STREAM_INDEXER_OPENSEARCH__USERNAME"):
        load_settings(
            {
                "opensearch.auth": "sigv4",
                "opensearch.aws_region": "eu-west-1",
                "opensearch.username": "u",
            }
        )
    settings = load_settings(
        {
            "opensearch.auth": "sigv4",
            "opensearch.aws_region": "eu-west-1",
            "opensearch.aws_service": "aoss",
        }
    )
    assert settings.opensearch.aws_service == "aoss"


def test_sigv4_registers_the_aws_secret_with_the_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNITTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-test-aws-secret-value")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    settings = load_settings(
        {
            "opensearch.auth": "sigv4",
            "opensearch.aws_region": "eu-west-1",
            "opensearch.hosts": "https://search.example:443",
        }
    )
    options = client_options(settings.opensearch)
    assert callable(options["http_auth"])
    assert "unit-test-aws-secret-value" not in mask_text("secret=unit-test-aws-secret-value!")


def test_key_passwords_are_secrets(ca_file: str) -> None:
    settings = load_settings(
        {
            "kafka.ssl_key_password": "kafka-key-pw-1",
            "opensearch.client_key_password": "os-key-pw-2",
        }
    )
    dumped = masked_dump(settings)
    assert dumped["kafka"]["ssl_key_password"] == MASK
    assert dumped["opensearch"]["client_key_password"] == MASK
    assert "kafka-key-pw-1" not in mask_text("pw kafka-key-pw-1 and os-key-pw-2")
    assert "os-key-pw-2" not in mask_text("pw kafka-key-pw-1 and os-key-pw-2")


def test_certificate_refusals_are_permanent_network_errors_are_not() -> None:
    refused = ssl.SSLCertVerificationError(1, "certificate verify failed")
    wrapped = ConnectionError("N/A")
    wrapped.__cause__ = refused
    assert tls_failure(wrapped) is refused
    assert not _retriable(wrapped) and not _retriable(refused)
    assert _retriable(ConnectionRefusedError(111, "refused"))
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert tls_failure(eof) is None and _retriable(eof)


def _alert(reason: str) -> ssl.SSLError:
    alert = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    alert.reason = reason
    return alert


@pytest.mark.parametrize(
    "reason",
    [
        "SSLV3_ALERT_HANDSHAKE_FAILURE",  # TLS 1.2 servers, in the handshake
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",  # TLS 1.3 servers, after it
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
    ],
)
def test_alerts_that_ask_for_a_client_certificate(reason: str) -> None:
    alert = _alert(reason)
    assert wants_client_certificate(alert) is alert
    wrapped = ConnectionError("lost")
    wrapped.__context__ = alert
    assert wants_client_certificate(wrapped) is alert


@pytest.mark.parametrize(
    "exc",
    [
        _alert("WRONG_VERSION_NUMBER"),
        _alert("TLSV1_ALERT_PROTOCOL_VERSION"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        ssl.SSLCertVerificationError(1, "certificate verify failed"),
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
    ],
    ids=lambda exc: type(exc).__name__ + str(getattr(exc, "reason", "")),
)
def test_a_network_failure_or_another_refusal_does_not_ask_for_one(exc: BaseException) -> None:
    assert wants_client_certificate(exc) is None
