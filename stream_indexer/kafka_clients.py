"""Core: Kafka clients, the one place that turns `Settings` into aiokafka keyword arguments
and the one factory every `AIOKafkaProducer` comes from.

The consumer commits by hand (the commit watermark decides), reads from the earliest
offset by default, and gets a rebalance timeout longer than the drain deadline so that
draining on revocation cannot get this member kicked out of the group.

Producers come in two tunings. The service's own ones (`dlq`, replay's `events`) follow the
`kafka` section and always wait for all in-sync replicas: a dead letter must not be lost. The
producer library's (`producer`, `outbox-relay`) follow the `producer` section, which users
tune for emit latency.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from aiokafka import AIOKafkaProducer

from stream_indexer.errors import ConfigError
from stream_indexer.kafka_security import sasl_kwargs, ssl_context
from stream_indexer.settings import KafkaSettings, Settings

#: what a producer is for; also the suffix of its Kafka client id
ProducerPurpose = Literal["dlq", "events", "producer", "outbox-relay"]
#: purposes tuned by the `producer` settings section (the rest: the `kafka` section)
LIBRARY_PURPOSES: frozenset[str] = frozenset({"producer", "outbox-relay"})


def connection_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Bootstrap, client id and security options shared by consumers, producers and admins
    (TLS and SASL come from `kafka_security`)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        kwargs["ssl_context"] = context
    kwargs.update(sasl_kwargs(kafka))
    return kwargs


def consumer_kwargs(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    drain_ms = int(settings.rebalance_timeout_s * 1000)
    return {
        **connection_kwargs(kafka),
        "group_id": kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
        "rebalance_timeout_ms": max(kafka.session_timeout_ms, drain_ms + 10_000),
        "fetch_max_bytes": kafka.fetch_max_bytes,
        "max_partition_fetch_bytes": kafka.max_partition_fetch_bytes,
        "isolation_level": kafka.isolation_level,
    }


def producer_kwargs(settings: Settings, *, purpose: Literal["dlq", "events"]) -> dict[str, Any]:
    """A producer that waits for all in-sync replicas (dead letters must not be lost)."""
    kafka = settings.kafka
    kwargs: dict[str, Any] = {
        **connection_kwargs(kafka),
        "client_id": f"{kafka.client_id}-{purpose}",
        "acks": "all",
        "enable_idempotence": kafka.enable_idempotence,
        "linger_ms": 5,
        "max_request_size": max(1024 * 1024, settings.dlq.max_value_bytes + 64 * 1024),
    }
    if kafka.producer_compression is not None:
        kwargs["compression_type"] = kafka.producer_compression
    return kwargs


def library_max_request_size(settings: Settings) -> int:
    """The largest request the producer library sends (a record above it fails alone)."""
    return max(settings.producer.max_batch_bytes, 1024 * 1024)


def library_producer_kwargs(settings: Settings, *, purpose: str = "producer") -> dict[str, Any]:
    """The producer library's producer, tuned by the `producer` section for emit latency."""
    p = settings.producer
    if p.enable_idempotence and p.acks != "all":
        raise ConfigError(
            "STREAM_INDEXER_PRODUCER__ACKS: must be 'all' when PRODUCER__ENABLE_IDEMPOTENCE is on"
        )
    return {
        **connection_kwargs(settings.kafka),
        "client_id": f"{settings.kafka.client_id}-{purpose}",
        "acks": "all" if p.acks == "all" else 1,
        "enable_idempotence": p.enable_idempotence,
        "compression_type": p.compression,
        "linger_ms": p.linger_ms,
        "max_batch_size": p.max_batch_bytes,
        "max_request_size": library_max_request_size(settings),
        "request_timeout_ms": p.delivery_timeout_ms,
    }


def create_producer(
    settings: Settings | None, purpose: ProducerPurpose | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """The one way an `AIOKafkaProducer` is built: settings for `purpose`, then `overrides`.

    `settings=None` builds from `overrides` alone, for dev tools that only know a bootstrap
    address; otherwise `purpose` is required and picks the tuning (see the module doc).
    """
    kwargs: dict[str, Any] = {}
    if settings is not None:
        if purpose not in get_args(ProducerPurpose):
            raise ValueError(f"unknown producer purpose {purpose!r}")
        if purpose in LIBRARY_PURPOSES:
            kwargs = library_producer_kwargs(settings, purpose=purpose)
        else:
            kwargs = producer_kwargs(settings, purpose="dlq" if purpose == "dlq" else "events")
    kwargs.update(overrides)
    return AIOKafkaProducer(**kwargs)
