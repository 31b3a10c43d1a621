"""Sink: how the OpenSearch client authenticates and checks the cluster's certificate
(basic auth, AWS SigV4 for OpenSearch Service and Serverless, client certificates).

The client always gets our own `ssl.SSLContext` (from `tls.client_context`), so there is one
place that decides verification: a CA or key that cannot be loaded is a `ConfigError`, and
`OPENSEARCH__VERIFY_CERTS=false` is an explicit, logged choice, never a fallback.

Under TLS 1.3 a cluster that requires a client certificate refuses a missing or untrusted one
only after our side of the handshake is done, and the refusal races our first request: the
alert can be lost to a connection reset, which reads as "cluster unreachable" and would be
waited on forever. `lost_certificate_refusal` asks again without a request (`tls.silent_verdict`).
Under TLS 1.2 the refusal of a missing certificate is a "handshake failure" alert inside the
handshake, which with a certificate may as well mean no common cipher or version: only with
no `OPENSEARCH__CLIENT_CERT` set does `missing_client_certificate` read it as the certificate.

SigV4 uses opensearch-py's async signer, which signs each request as it is sent: after
`OPENSEARCH__HTTP_COMPRESS` gzipped the body, so the payload hash matches the bytes on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ServerDisconnectedError
from opensearchpy import AsyncHttpConnection

from stream_indexer.errors import ClientCertificateRequiredError, ConfigError
from stream_indexer.masking import remember, secret_forms
from stream_indexer.settings import ENV_PREFIX, OpenSearchSettings
from stream_indexer.tls import (
    TlsFiles,
    causes,
    client_context,
    missing_certificate,
    silent_verdict,
    tls_failure,
)

log = logging.getLogger(__name__)
_PREFIX = f"{ENV_PREFIX}OPENSEARCH__"


def client_options(settings: OpenSearchSettings) -> dict[str, Any]:
    """`AsyncOpenSearch` keyword arguments for authentication and TLS."""
    options: dict[str, Any] = {"http_auth": http_auth(settings)}
    if settings.auth == "sigv4":
        # the default aiohttp connection only knows basic auth; this one calls the signer
        options["connection_class"] = AsyncHttpConnection
    if any(host.lower().startswith("https://") for host in settings.hosts):
        options["ssl_context"] = tls_context(settings)
    return options


def tls_context(settings: OpenSearchSettings) -> ssl.SSLContext:
    """The context every HTTPS connection to the cluster uses."""
    if not settings.verify_certs:
        log.warning(
            "%sVERIFY_CERTS=false: the OpenSearch certificate is not checked; anyone on the "
            "network path can read and change what is indexed",
            _PREFIX,
        )
    password = settings.client_key_password
    return client_context(
        TlsFiles(
            cafile=settings.ca_certs,
            certfile=settings.client_cert,
            keyfile=settings.client_key,
            key_password=password.get_secret_value() if password else None,
            verify=settings.verify_certs,
            check_hostname=settings.verify_certs,
            names=(
                f"{_PREFIX}CA_CERTS",
                f"{_PREFIX}CLIENT_CERT",
                f"{_PREFIX}CLIENT_KEY",
                f"{_PREFIX}CLIENT_KEY_PASSWORD",
            ),
        )
    )


def missing_client_certificate(
    exc: BaseException, settings: OpenSearchSettings
) -> ClientCertificateRequiredError | None:
    """The error to fail start-up with when `exc` is the cluster asking for the client
    certificate we did not send (TLS 1.2 "handshake failure", TLS 1.3 "certificate
    required"); None when one is configured (the cluster then judged it, or refused for
    another reason) or `exc` carries no such alert."""
    if settings.client_cert:
        return None
    return missing_certificate(
        exc,
        server="OpenSearch",
        peer="cluster",
        cert_setting=f"{_PREFIX}CLIENT_CERT",
        key_setting=f"{_PREFIX}CLIENT_KEY",
    )


async def lost_certificate_refusal(
    exc: BaseException, hosts: list[str], context: ssl.SSLContext | None, timeout_s: float
) -> ssl.SSLError | None:
    """The certificate refusal a connection reset in `exc` may have hidden, if there was one.

    Only a connection that was reset or closed after it was opened asks: each HTTPS host is
    connected to once more, at the same time, with the client's `context`, sent nothing, and
    given a few seconds (`tls.VERDICT_WAIT_S`) to refuse our certificate. A host that stays
    silent, closes without an alert or cannot be reached says nothing: the caller waits for
    the cluster as for any outage."""
    if context is None or not _lost_connection(exc):
        return None
    targets = [urlsplit(host) for host in hosts if host.lower().startswith("https://")]
    ended = await asyncio.gather(
        *(
            silent_verdict(url.hostname or "", url.port or 443, context, timeout_s=timeout_s)
            for url in targets
            if url.hostname
        )
    )
    for error in ended:
        failure = tls_failure(error) if error is not None else None
        if failure is not None:
            log.debug("a connection reset hid a TLS refusal: %s", failure)
            return failure
    return None


def _lost_connection(exc: BaseException) -> bool:
    """Whether a reset or close of an open connection is behind `exc` (opensearch-py keeps
    aiohttp's error in `.info`, aiohttp the OS error in `.os_error`)."""
    lost = ConnectionResetError | ConnectionAbortedError | BrokenPipeError | ServerDisconnectedError
    return any(isinstance(current, lost) for current in causes(exc))


def http_auth(settings: OpenSearchSettings) -> Any:
    """Basic credentials, a SigV4 signer, or None."""
    if settings.auth == "sigv4":
        assert settings.aws_region is not None  # the settings validator makes sure
        return sigv4_auth(settings.aws_region, settings.aws_service)
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        return (settings.username, password)
    return None


def sigv4_auth(region: str, service: str) -> Any:
    """opensearch-py's async SigV4 signer with credentials from the standard AWS chain
    (environment, shared profile, web identity for EKS/IRSA, container or instance role).

    Refreshable credentials stay refreshable: the signer freezes them per request.
    """
    try:
        import botocore.session
        from opensearchpy import AWSV4SignerAsyncAuth
    except ImportError:
        raise ConfigError(
            f"{_PREFIX}AUTH=sigv4 needs botocore: install stream-indexer[aws]"
        ) from None
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise ConfigError(
            f"{_PREFIX}AUTH=sigv4: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity / instance role)"
        )
    frozen = credentials.get_frozen_credentials()
    remember(
        secret_forms(frozen.secret_key) | (secret_forms(frozen.token) if frozen.token else set())
    )
    return AWSV4SignerAsyncAuth(credentials, region, service)


__all__ = [
    "client_options",
    "http_auth",
    "lost_certificate_refusal",
    "missing_client_certificate",
    "sigv4_auth",
    "tls_context",
]
