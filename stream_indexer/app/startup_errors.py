"""Start-up failures: why `run` or `dev` could not start, as one line naming what to change.

Wiring, below the CLI: each start step of the service runs inside `startup_step(step)`. What
waiting cannot fix (a broker refusing the idempotent producer, bad credentials, a missing
permission, a busy port) leaves the step as `StartupFailedError`, whose message names the
setting or permission to change. The CLI prints that line on stderr and exits with
`EXIT_STARTUP_FAILED`; the cause's traceback is logged at DEBUG only. Bad settings are not
start-up failures: `ConfigError` passes through untouched and keeps exit code 2.
"""

from __future__ import annotations

import enum
import errno
import logging
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import asyncpg
from aiokafka import errors as kafka_errors
from opensearchpy.exceptions import AuthenticationException, AuthorizationException

from stream_indexer.errors import (
    ClientCertificateRequiredError,
    StartupFailedError,
    StreamIndexerError,
)
from stream_indexer.masking import mask_text
from stream_indexer.tls import describe, tls_failure

log = logging.getLogger(__name__)

#: exit code of `run` and `dev` when start-up failed (config errors exit 2)
EXIT_STARTUP_FAILED = 3
_MAX_CAUSE_CHARS = 300


class Step(enum.StrEnum):
    """What the process was doing when start-up failed."""

    METRICS = "metrics server"
    DEV_STACK = "embedded stack"
    OPENSEARCH = "opensearch"
    POSTGRES = "postgres"
    DLQ_TOPIC = "kafka dead-letter topic"
    DLQ_PRODUCER = "kafka dead-letter producer"
    CONSUMER = "kafka consumer"


#: Kafka errors that retrying the same request cannot fix
KAFKA_AUTH_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)
KAFKA_ACL_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
)

POSTGRES_LOGIN_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
)

_SASL = (
    "Kafka refused authentication: check STREAM_INDEXER_KAFKA__SECURITY_PROTOCOL, "
    "STREAM_INDEXER_KAFKA__SASL_MECHANISM, STREAM_INDEXER_KAFKA__SASL_USERNAME and "
    "STREAM_INDEXER_KAFKA__SASL_PASSWORD"
)


def permanent_kafka_error(exc: BaseException) -> bool:
    """Authentication and authorization refusals: waiting for Kafka will not fix them."""
    return isinstance(exc, KAFKA_AUTH_ERRORS + KAFKA_ACL_ERRORS)


def explain(step: Step, exc: BaseException) -> StartupFailedError:
    """The start-up failure for `exc` raised during `step`, naming what to change."""
    return StartupFailedError(step, _advice(step, exc))


#: per service: (its name, the settings that hold its CA, its address, our certificate)
_TLS_SETTINGS = {
    "kafka": (
        "Kafka",
        "STREAM_INDEXER_KAFKA__SSL_CAFILE",
        "STREAM_INDEXER_KAFKA__BOOTSTRAP_SERVERS",
        "STREAM_INDEXER_KAFKA__SSL_CERTFILE and STREAM_INDEXER_KAFKA__SSL_KEYFILE",
    ),
    "opensearch": (
        "OpenSearch",
        "STREAM_INDEXER_OPENSEARCH__CA_CERTS",
        "STREAM_INDEXER_OPENSEARCH__HOSTS",
        "STREAM_INDEXER_OPENSEARCH__CLIENT_CERT and STREAM_INDEXER_OPENSEARCH__CLIENT_KEY",
    ),
    "postgres": (
        "Postgres",
        "sslrootcert in STREAM_INDEXER_POSTGRES__DSN",
        "the host in STREAM_INDEXER_POSTGRES__DSN",
        "sslcert and sslkey in STREAM_INDEXER_POSTGRES__DSN",
    ),
}


def _tls_advice(step: Step, failure: ssl.SSLError) -> str:
    """A refused certificate, named by the settings that fix it."""
    service = {Step.OPENSEARCH: "opensearch", Step.POSTGRES: "postgres"}.get(step, "kafka")
    what, ca, address, ours = _TLS_SETTINGS[service]
    reason = describe(failure)
    if isinstance(failure, ssl.SSLCertVerificationError):
        return (
            f"{what}'s TLS certificate was refused ({reason}): set {ca} to the CA that signed "
            f"it, and make {address} name a host the certificate is issued for"
        )
    if getattr(failure, "reason", None) == "WRONG_VERSION_NUMBER":
        return f"{what} does not speak TLS at {address} ({reason}): check the address and port"
    if getattr(failure, "reason", None) == "TLSV1_ALERT_UNKNOWN_CA":
        return (
            f"{what} does not trust our TLS client certificate ({reason}): set {ours} to a "
            f"certificate signed by a CA {what} trusts"
        )
    return f"{what} refused our TLS client certificate ({reason}): check {ours}"


def _advice(step: Step, exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, ClientCertificateRequiredError):
        return str(exc)  # names the settings already
    failure = tls_failure(exc)
    if failure is not None:
        return _tls_advice(step, failure)
    if isinstance(exc, KAFKA_AUTH_ERRORS):
        return f"{_SASL} ({name})"
    if step is Step.DLQ_PRODUCER and isinstance(exc, kafka_errors.BrokerResponseError):
        return (
            f"the Kafka broker refused the idempotent producer (InitProducerId: {name}): set "
            "STREAM_INDEXER_KAFKA__ENABLE_IDEMPOTENCE=false, or grant this principal the "
            "IDEMPOTENT_WRITE ACL on the cluster"
        )
    if isinstance(exc, kafka_errors.GroupAuthorizationFailedError):
        return (
            "Kafka denied the consumer group: grant this principal READ on the group "
            "named by STREAM_INDEXER_KAFKA__GROUP_ID, or change that setting"
        )
    if step is Step.DLQ_TOPIC and isinstance(exc, KAFKA_ACL_ERRORS):
        return (
            f"Kafka denied creating or describing the dead-letter topic ({name}): create the "
            "topic named by STREAM_INDEXER_DLQ__TOPIC beforehand and grant this principal "
            "DESCRIBE and WRITE on it (CREATE to let the indexer create it)"
        )
    if isinstance(exc, kafka_errors.TopicAuthorizationFailedError):
        return (
            "Kafka denied access to the topic: grant this principal READ and DESCRIBE on the "
            "topic named by STREAM_INDEXER_KAFKA__TOPIC, or change that setting"
        )
    if isinstance(exc, KAFKA_ACL_ERRORS):
        return f"Kafka denied a request ({name}): check this principal's ACLs"
    if isinstance(exc, kafka_errors.UnknownTopicOrPartitionError):
        return (
            "the topic named by STREAM_INDEXER_KAFKA__TOPIC does not exist and the broker "
            "does not create it: create it, or fix the name"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (
            "the database in STREAM_INDEXER_POSTGRES__DSN does not exist: create it "
            "(then `stream-indexer migrate up`), or fix the DSN"
        )
    if isinstance(exc, POSTGRES_LOGIN_ERRORS):
        return (
            "Postgres refused the login: fix the user or password in STREAM_INDEXER_POSTGRES__DSN"
        )
    if isinstance(exc, AuthenticationException):
        return (
            "OpenSearch refused the credentials (HTTP 401): check "
            "STREAM_INDEXER_OPENSEARCH__USERNAME and STREAM_INDEXER_OPENSEARCH__PASSWORD"
        )
    if isinstance(exc, AuthorizationException):
        return (
            "OpenSearch denied the index set-up (HTTP 403): grant this user index and alias "
            "management on STREAM_INDEXER_OPENSEARCH__INDEX, or create them beforehand and set "
            "STREAM_INDEXER_OPENSEARCH__CREATE_INDEX=false"
        )
    if step is Step.METRICS and isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (
            "the metrics port is in use: set STREAM_INDEXER_METRICS__PORT to a free port, "
            "or STREAM_INDEXER_METRICS__ENABLED=false"
        )
    return f"{name}: {_one_line(exc)} (STREAM_INDEXER_LOG__LEVEL=DEBUG shows the traceback)"


def _one_line(exc: BaseException) -> str:
    """The cause's text on one line, URL passwords masked, cut to a readable length."""
    text = " ".join(mask_text(str(exc)).split()) or "no message"
    if len(text) > _MAX_CAUSE_CHARS:
        text = text[: _MAX_CAUSE_CHARS - 3] + "..."
    return text


@contextmanager
def startup_step(step: Step) -> Iterator[None]:
    """Turn what escapes `step` into `StartupFailedError`; our own errors pass unchanged
    (a `ConfigError` is a config problem, exit 2; a stop request is no failure)."""
    try:
        yield
    except ClientCertificateRequiredError as exc:
        raise explain(step, exc) from exc
    except StreamIndexerError:
        raise
    except Exception as exc:
        raise explain(step, exc) from exc


def report(exc: StartupFailedError, stream: TextIO | None = None) -> int:
    """Print the failure as one line (traceback at DEBUG only); return the exit code."""
    log.debug("start-up failed", exc_info=exc.__cause__ or exc)
    print(f"stream-indexer: {exc}", file=stream or sys.stderr, flush=True)
    return EXIT_STARTUP_FAILED


__all__ = [
    "EXIT_STARTUP_FAILED",
    "StartupFailedError",
    "Step",
    "explain",
    "permanent_kafka_error",
    "report",
    "startup_step",
]
