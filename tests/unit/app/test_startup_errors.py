"""Start-up failures become one line naming what to change (`startup_errors`)."""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import ssl

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from opensearchpy.exceptions import AuthenticationException, AuthorizationException

from stream_indexer.app.startup import until_ready
from stream_indexer.app.startup_errors import (
    EXIT_STARTUP_FAILED,
    StartupFailedError,
    Step,
    explain,
    report,
    startup_step,
)
from stream_indexer.backoff import Backoff
from stream_indexer.errors import ClientCertificateRequiredError, ConfigError

IDEMPOTENCE = "STREAM_INDEXER_KAFKA__ENABLE_IDEMPOTENCE"


def _line(step: Step, exc: BaseException) -> str:
    message = str(explain(step, exc))
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "refusal",
    [
        kafka_errors.UnknownError(),  # tansu: InitProducerId v0
        kafka_errors.ClusterAuthorizationFailedError(),  # no IDEMPOTENT_WRITE ACL
        kafka_errors.TransactionalIdAuthorizationFailed(),
    ],
)
def test_a_refused_idempotent_producer_names_the_setting_and_the_acl(
    refusal: BaseException,
) -> None:
    line = _line(Step.DLQ_PRODUCER, refusal)
    assert f"{IDEMPOTENCE}=false" in line
    assert "IDEMPOTENT_WRITE" in line


def test_the_same_broker_error_elsewhere_does_not_blame_idempotence() -> None:
    assert IDEMPOTENCE not in _line(Step.CONSUMER, kafka_errors.UnknownError())


@pytest.mark.parametrize("step", list(Step))
def test_sasl_refusal_names_the_sasl_settings_whatever_the_step(step: Step) -> None:
    line = _line(step, kafka_errors.SaslAuthenticationFailed())
    assert "STREAM_INDEXER_KAFKA__SASL_USERNAME" in line
    assert "STREAM_INDEXER_KAFKA__SASL_PASSWORD" in line


def test_topic_refusals_name_the_topic_setting_of_their_step() -> None:
    denied = kafka_errors.TopicAuthorizationFailedError()
    assert "STREAM_INDEXER_DLQ__TOPIC" in _line(Step.DLQ_TOPIC, denied)
    assert "STREAM_INDEXER_DLQ__TOPIC" in _line(
        Step.DLQ_TOPIC, kafka_errors.ClusterAuthorizationFailedError()
    )
    assert "STREAM_INDEXER_KAFKA__TOPIC" in _line(Step.CONSUMER, denied)
    assert "STREAM_INDEXER_KAFKA__TOPIC" in _line(
        Step.CONSUMER, kafka_errors.UnknownTopicOrPartitionError()
    )
    group = kafka_errors.GroupAuthorizationFailedError()
    assert "STREAM_INDEXER_KAFKA__GROUP_ID" in _line(Step.CONSUMER, group)


def test_postgres_opensearch_and_port_failures_name_their_settings() -> None:
    dsn = "STREAM_INDEXER_POSTGRES__DSN"
    assert dsn in _line(Step.POSTGRES, asyncpg.InvalidPasswordError("bad password"))
    assert dsn in _line(Step.POSTGRES, asyncpg.InvalidCatalogNameError("no database"))
    unauthorised = AuthenticationException(401, "security_exception", {})
    assert "STREAM_INDEXER_OPENSEARCH__PASSWORD" in _line(Step.OPENSEARCH, unauthorised)
    forbidden = AuthorizationException(403, "security_exception", {})
    assert "STREAM_INDEXER_OPENSEARCH__CREATE_INDEX" in _line(Step.OPENSEARCH, forbidden)
    busy = OSError(errno.EADDRINUSE, "address already in use")
    assert "STREAM_INDEXER_METRICS__PORT" in _line(Step.METRICS, busy)


def test_an_unknown_cause_is_one_masked_bounded_line() -> None:
    cause = RuntimeError("cannot reach\nhttps://admin:hunter2@os:9200/ " + "x" * 1000)
    line = _line(Step.OPENSEARCH, cause)
    assert "hunter2" not in line
    assert "RuntimeError" in line and "STREAM_INDEXER_LOG__LEVEL=DEBUG" in line
    assert len(line) < 500


def test_startup_step_wraps_causes_but_passes_our_own_errors() -> None:
    with pytest.raises(StartupFailedError) as failed, startup_step(Step.DLQ_PRODUCER):
        raise kafka_errors.UnknownError()
    assert isinstance(failed.value.__cause__, kafka_errors.UnknownError)
    assert failed.value.step is Step.DLQ_PRODUCER
    with pytest.raises(ConfigError), startup_step(Step.OPENSEARCH):
        raise ConfigError("STREAM_INDEXER_OPENSEARCH__INDEX: taken")


def test_a_missing_client_certificate_is_a_startup_failure_with_its_own_line() -> None:
    """Not a config error (exit 2) although it is ours: it fails the step like every other
    TLS refusal (exit 3), and its line is the one that names the setting."""
    required = ClientCertificateRequiredError(
        "Kafka requires a TLS client certificate and none is set (x): set "
        "STREAM_INDEXER_KAFKA__SSL_CERTFILE and STREAM_INDEXER_KAFKA__SSL_KEYFILE"
    )
    required.__context__ = ssl.SSLError(1, "alert")  # the alert it was read from
    with pytest.raises(StartupFailedError) as failed, startup_step(Step.DLQ_TOPIC):
        raise required
    assert failed.value.__cause__ is required
    assert str(failed.value) == f"start-up failed (kafka dead-letter topic): {required}"
    assert _line(Step.CONSUMER, required).endswith(str(required))


def test_an_untrusted_client_certificate_says_so() -> None:
    unknown_ca = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    unknown_ca.reason = "TLSV1_ALERT_UNKNOWN_CA"
    line = _line(Step.DLQ_TOPIC, unknown_ca)
    assert "does not trust our TLS client certificate (tlsv1 alert unknown ca)" in line
    assert "STREAM_INDEXER_KAFKA__SSL_CERTFILE" in line
    required = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]")
    required.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert "refused our TLS client certificate" in _line(Step.OPENSEARCH, required)


async def test_until_ready_gives_up_at_once_on_a_refusal_and_waits_out_a_lost_connection() -> None:
    calls: list[int] = []

    async def refused() -> None:
        calls.append(1)
        raise kafka_errors.UnknownError()

    with pytest.raises(kafka_errors.UnknownError):
        await until_ready("kafka", refused, asyncio.Event())
    assert len(calls) == 1

    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise kafka_errors.KafkaConnectionError("no route")
        return "up"

    assert await until_ready("kafka", flaky, asyncio.Event(), backoff=Backoff(0.001)) == "up"


def test_report_prints_one_line_and_the_traceback_only_at_debug() -> None:
    try:
        with startup_step(Step.DLQ_PRODUCER):
            raise kafka_errors.UnknownError()
    except StartupFailedError as exc:
        failure = exc
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    try:
        for root_level, traceback_shown in ((logging.INFO, False), (logging.DEBUG, True)):
            root.setLevel(root_level)
            out = io.StringIO()
            assert report(failure, out) == EXIT_STARTUP_FAILED
            lines = out.getvalue().splitlines()
            assert len(lines) == 1 and IDEMPOTENCE in lines[0]
            assert ("Traceback" in logs.getvalue()) is traceback_shown
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
