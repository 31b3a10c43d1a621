"""Kafka client settings and the one producer factory: what each client is configured with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from stream_indexer.errors import ConfigError
from stream_indexer.kafka_clients import (
    connection_kwargs,
    consumer_kwargs,
    create_producer,
    library_producer_kwargs,
    producer_kwargs,
)
from stream_indexer.settings import Settings, load_settings

Factory = Callable[..., AIOKafkaProducer]


def settings(**overrides: Any) -> Settings:
    return load_settings({"kafka.bootstrap_servers": "k1:9092,k2:9092", **overrides})


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    """`create_producer`, closing every producer it built (none is started)."""
    built: list[AIOKafkaProducer] = []

    def factory(*args: Any, **kwargs: Any) -> AIOKafkaProducer:
        producer = create_producer(*args, **kwargs)
        built.append(producer)
        return producer

    yield factory
    for producer in built:
        await producer.stop()


def test_plaintext_connection_has_no_ssl_or_sasl() -> None:
    kwargs = connection_kwargs(settings().kafka)
    assert kwargs == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "client_id": "stream-indexer",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_password_is_passed_as_plain_text_to_the_client() -> None:
    kafka = settings(
        **{
            "kafka.security_protocol": "SASL_PLAINTEXT",
            "kafka.sasl_mechanism": "PLAIN",
            "kafka.sasl_username": "indexer",
            "kafka.sasl_password": "s3cret",
        }
    ).kafka
    kwargs = connection_kwargs(kafka)
    assert kwargs["sasl_mechanism"] == "PLAIN"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("indexer", "s3cret")
    assert "ssl_context" not in kwargs


def test_consumer_commits_by_hand_and_outlasts_the_drain_deadline() -> None:
    s = settings(rebalance_timeout_s=45)
    kwargs = consumer_kwargs(s)
    assert kwargs["enable_auto_commit"] is False
    assert kwargs["group_id"] == "stream-indexer"
    # draining on revocation must finish before the group gives up on this member
    assert kwargs["rebalance_timeout_ms"] >= 45_000 + 10_000
    assert kwargs["rebalance_timeout_ms"] >= kwargs["session_timeout_ms"]


def test_service_producers_wait_for_all_replicas_and_fit_a_dead_letter() -> None:
    s = settings(**{"kafka.enable_idempotence": False, "kafka.producer_compression": "gzip"})
    kwargs = producer_kwargs(s, purpose="dlq")
    assert kwargs["acks"] == "all"
    assert kwargs["client_id"] == "stream-indexer-dlq"
    assert kwargs["enable_idempotence"] is False
    assert kwargs["compression_type"] == "gzip"
    assert kwargs["max_request_size"] > s.dlq.max_value_bytes


def test_library_producer_follows_the_producer_section() -> None:
    s = settings(**{"producer.acks": "1", "producer.enable_idempotence": False})
    kwargs = library_producer_kwargs(s, purpose="outbox-relay")
    assert kwargs["acks"] == 1
    assert kwargs["client_id"] == "stream-indexer-outbox-relay"
    assert kwargs["compression_type"] == s.producer.compression


def test_idempotence_without_acks_all_is_a_config_error() -> None:
    s = settings(**{"producer.acks": "1", "producer.enable_idempotence": True})
    with pytest.raises(ConfigError, match="PRODUCER__ACKS"):
        library_producer_kwargs(s)


async def test_factory_picks_the_tuning_by_purpose(make: Factory) -> None:
    s = settings(**{"kafka.enable_idempotence": False, "producer.linger_ms": 17})
    dlq = make(s, "dlq")
    library = make(s, "producer")
    assert dlq.client._client_id == "stream-indexer-dlq"
    assert library.client._client_id == "stream-indexer-producer"
    assert library._message_accumulator._linger_time == pytest.approx(0.017)
    assert dlq._message_accumulator._linger_time == pytest.approx(0.005)


async def test_factory_overrides_win_and_need_no_settings(make: Factory) -> None:
    producer = make(None, bootstrap_servers="k9:9092", client_id="demo", linger_ms=10)
    assert producer.client._client_id == "demo"
    assert producer.client._bootstrap_servers == "k9:9092"
    overridden = make(settings(**{"kafka.enable_idempotence": False}), "dlq", client_id="x")
    assert overridden.client._client_id == "x"


async def test_factory_refuses_an_unknown_purpose() -> None:
    with pytest.raises(ValueError, match="unknown producer purpose"):
        create_producer(settings(), "nightly")  # type: ignore[arg-type]
