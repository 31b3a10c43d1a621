"""Core: how every Kafka client proves who it is and checks who it talks to (TLS, mTLS,
Amazon MSK IAM), shared by the consumer, the producers, the admin client and the tools.

aiokafka hides why a bootstrap failed (a refused certificate and a refused connection both
end as "Unable to bootstrap"), so `check_tls` performs the TLS handshake itself before the
first client connects: a wrong CA or host name, or a client certificate the broker wants and
does not get, then fails start-up at once, naming the setting, instead of being retried
forever as if the broker were down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
import weakref
from typing import Any

from aiokafka.abc import AbstractTokenProvider

from stream_indexer.errors import ConfigError
from stream_indexer.masking import remember, secret_forms
from stream_indexer.settings import ENV_PREFIX, KafkaSettings
from stream_indexer.tls import (
    TlsFiles,
    client_context,
    missing_certificate,
    silent_verdict,
    tls_failure,
)

log = logging.getLogger(__name__)

#: refresh an MSK IAM token this long before it expires (tokens live 15 minutes)
TOKEN_REFRESH_MARGIN_S = 60.0
_PREFIX = f"{ENV_PREFIX}KAFKA__"


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The client context for SSL and SASL_SSL, None for plaintext protocols."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
    context = client_context(
        TlsFiles(
            cafile=kafka.ssl_cafile,
            certfile=kafka.ssl_certfile,
            keyfile=kafka.ssl_keyfile,
            key_password=password,
            verify=True,
            check_hostname=kafka.ssl_check_hostname,
            names=(
                f"{_PREFIX}SSL_CAFILE",
                f"{_PREFIX}SSL_CERTFILE",
                f"{_PREFIX}SSL_KEYFILE",
                f"{_PREFIX}SSL_KEY_PASSWORD",
            ),
        )
    )
    if kafka.ssl_certfile:
        _WITH_CLIENT_CERTIFICATE.add(context)
    return context


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER tokens for Amazon MSK IAM, signed with the standard AWS credential chain
    (environment, profile, web identity for EKS/IRSA, instance role) and cached until shortly
    before they expire. Signing may call AWS (STS, instance metadata): it runs in a thread."""

    def __init__(self, region: str) -> None:
        try:
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        except ImportError:
            raise ConfigError(
                f"{_PREFIX}SASL_MECHANISM=OAUTHBEARER (Amazon MSK IAM) needs the "
                "aws-msk-iam-sasl-signer-python package: install stream-indexer[aws]"
            ) from None
        self._generate = MSKAuthTokenProvider.generate_auth_token
        self._region = region
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.time() > self._expires_at - TOKEN_REFRESH_MARGIN_S:
                token, expiry_ms = await asyncio.to_thread(self._generate, self._region)
                remember(secret_forms(token))  # a bearer token is a credential
                self._token, self._expires_at = token, expiry_ms / 1000
            return self._token


def sasl_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka's SASL keyword arguments for the configured mechanism."""
    if kafka.sasl_mechanism is None:
        return {}
    if kafka.sasl_mechanism == "OAUTHBEARER":
        assert kafka.aws_region is not None  # the settings validator makes sure
        return {
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_provider": MskIamTokenProvider(kafka.aws_region),
        }
    return {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username.get_secret_value()
        if kafka.sasl_username
        else None,
        "sasl_plain_password": kafka.sasl_password.get_secret_value()
        if kafka.sasl_password
        else None,
    }


async def check_tls(
    bootstrap_servers: str, context: ssl.SSLContext, timeout_s: float = 10.0
) -> None:
    """Handshake with each bootstrap server and ask it for its API versions; raise the first
    certificate refusal, ours of the server's or the server's of ours.

    A broker that wants a client certificate we do not send raises
    `ClientCertificateRequiredError`, under TLS 1.2 (an alert in the handshake) and 1.3 alike.
    Under TLS 1.3 the server judges our certificate only after our side of the handshake is
    done, and its alert can be lost: when our request reaches a server that is closing, the
    close resets the connection. So a TLS 1.3 server that closes without an answer is
    connected to once more and this time not asked anything: its verdict then arrives
    intact. A server that cannot be reached, or closes again without an alert (a TLS proxy
    whose broker is down does), is skipped: the clients wait for it as usual.
    """
    certificate = context in _WITH_CLIENT_CERTIFICATE
    for address in bootstrap_servers.split(","):
        host, port = _host_port(address.strip())
        closed, tls13 = await _probe(host, port, context, certificate, timeout_s)
        if not (closed and tls13):
            continue
        ended = await silent_verdict(host, port, context, timeout_s=timeout_s)
        if ended is not None:
            _raise_refusal(ended, certificate)
        # no alert: a broker going away, a TLS proxy whose broker is down
        log.debug("TLS check of %s skipped: closed after the handshake (%s)", address, ended)


#: the client contexts `ssl_context` loaded a client certificate into
_WITH_CLIENT_CERTIFICATE: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()


async def _probe(
    host: str, port: int, context: ssl.SSLContext, certificate: bool, timeout_s: float
) -> tuple[bool, bool]:
    """One connection that sends ApiVersions and reads the answer: raise a certificate
    refusal; else (closed right after the handshake without an answer, TLS 1.3 negotiated)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout_s
        )
    except (OSError, TimeoutError) as exc:
        _raise_refusal(exc, certificate)
        log.debug("TLS check of %s:%d skipped: %s", host, port, exc)
        return False, False
    ssl_object = writer.get_extra_info("ssl_object")
    tls13 = ssl_object is not None and ssl_object.version() == "TLSv1.3"
    try:
        writer.write(_API_VERSIONS_V0)
        answer = await asyncio.wait_for(reader.read(4), timeout_s)
    except TimeoutError:
        return False, tls13  # no answer
    except OSError as exc:
        _raise_refusal(exc, certificate)
        return True, tls13  # reset, or ended in a way that says nothing about certificates
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout_s)
    return not answer, tls13


def _raise_refusal(exc: BaseException, certificate: bool) -> None:
    """Raise what `exc` says about certificates; return when it says nothing."""
    if not certificate:
        missing = missing_certificate(
            exc,
            server="Kafka",
            peer="broker",
            cert_setting=f"{_PREFIX}SSL_CERTFILE",
            key_setting=f"{_PREFIX}SSL_KEYFILE",
        )
        if missing is not None:
            raise missing from None
    failure = tls_failure(exc)
    if failure is not None:
        raise failure from None


#: ApiVersions v0, correlation id 0, client id "tls-check": every broker answers it, before
#: authentication too
_API_VERSIONS_V0 = struct.pack(">ihhih", 19, 18, 0, 0, 9) + b"tls-check"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{_PREFIX}BOOTSTRAP_SERVERS: expected host:port entries")
    return host.strip("[]"), int(port)


__all__ = ["MskIamTokenProvider", "check_tls", "sasl_kwargs", "ssl_context"]
