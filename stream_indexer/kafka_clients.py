"""Kafka client settings: one place that turns `Settings` into aiokafka keyword arguments.

The consumer commits by hand (the commit watermark decides), reads from the earliest
offset by default, and gets a rebalance timeout longer than the drain deadline so that
draining on revocation cannot get this member kicked out of the group.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from stream_indexer.settings import KafkaSettings, Settings


def connection_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Bootstrap, client id and security options shared by consumers, producers and admins."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.sasl_mechanism is not None:
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = (
            kafka.sasl_username.get_secret_value() if kafka.sasl_username else None
        )
        kwargs["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
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
