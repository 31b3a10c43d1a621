"""Core settings, Kafka side: the consumer, the DLQ stores, the producer library, the outbox."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from stream_indexer.settings.base import ENV_PREFIX, MIB, Section, split_csv


class KafkaSettings(Section):
    """Where events come from and how the consumer group behaves."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "listings.changes"
    group_id: str = "stream-indexer"
    client_id: str = "stream-indexer"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(default=None, description="OAUTHBEARER: Amazon MSK IAM (needs the `aws` extra)")
    )
    sasl_username: SecretStr | None = Field(
        default=None, description="secret too: on managed Kafka it is often an API key"
    )
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = Field(default=None, description="client certificate (mTLS)")
    ssl_keyfile: str | None = Field(default=None, description="its private key (PEM)")
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    aws_region: str | None = Field(default=None, description="MSK IAM: the cluster's region")
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    fetch_max_records: int = Field(
        default=5_000,
        ge=1,
        description="records per getmany call (also never more than the smallest buffer room)",
    )
    # Small fetches keep memory flat under any backlog: a fetched response stays in memory
    # until every partition in it is consumed, and the broker sends what the limits allow.
    fetch_max_bytes: int = Field(default=1 * MIB, ge=1024)
    max_partition_fetch_bytes: int = Field(default=512 * 1024, ge=1024)
    commit_interval_ms: int = Field(default=1_000, ge=10)
    enable_idempotence: bool = Field(
        default=True, description="idempotent producer for the DLQ topic (off on tansu)"
    )
    producer_compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = "lz4"

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        """aiokafka refuses SASL without these with an assertion; say which to set instead."""
        if self.security_protocol.startswith("SASL_"):
            needed: tuple[str, ...] = ("sasl_mechanism", "sasl_username", "sasl_password")
            if self.sasl_mechanism == "OAUTHBEARER":
                needed = ("aws_region",)  # the token comes from the AWS credential chain
            missing = [
                f"{ENV_PREFIX}KAFKA__{name.upper()}"
                for name in needed
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"{', '.join(missing)} must be set when {ENV_PREFIX}KAFKA__SECURITY_PROTOCOL"
                    " is a SASL protocol"
                )
        return self


DlqStore = Literal["postgres", "kafka"]


class DlqSettings(Section):
    """Where poison records go: the DLQ topic and the Postgres table."""

    topic: str | None = Field(default=None, description="defaults to `<kafka.topic>.dlq`")
    table: str = "opensearch_indexing_dlq"
    topic_partitions: int = Field(default=1, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=-1)
    max_value_bytes: int = Field(
        default=1 * MIB, ge=1024, description="records larger than this are refused unread"
    )
    table_max_value_bytes: int = Field(
        default=16 * MIB,
        ge=64 * 1024,
        description="value bytes a DLQ table row keeps; beyond it the first bytes, size, SHA-256",
    )
    required_stores: Annotated[list[DlqStore], NoDecode] = Field(
        default_factory=lambda: list[DlqStore](["postgres", "kafka"]),
        description="stores that must accept a dead letter before its offset may move",
    )
    redact_drop_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="listing fields removed before storing a dead letter"
    )
    redact_hash_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="listing fields replaced by their SHA-256"
    )
    resolve_max_pending: int = Field(
        default=100_000,
        ge=0,
        description="written listings buffered to resolve DLQ rows; 0 turns resolving off",
    )

    _split_lists = field_validator(
        "required_stores", "redact_drop_fields", "redact_hash_fields", mode="before"
    )(split_csv)

    @field_validator("required_stores")
    @classmethod
    def _some_store_required(cls, stores: list[str]) -> list[str]:
        if not stores:
            raise ValueError("at least one of postgres, kafka must be required")
        return stores


class ProducerSettings(Section):
    """The producer library, `produce`, `loadgen` and the outbox relay."""

    acks: Literal["all", "1"] = "all"
    enable_idempotence: bool = Field(
        default=True, description="unset: as KAFKA__ENABLE_IDEMPOTENCE (off on tansu)"
    )
    compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        default="lz4", description="unset: as KAFKA__PRODUCER_COMPRESSION"
    )
    linger_ms: int = Field(default=5, ge=0)
    max_batch_bytes: int = Field(default=1 * MIB, ge=1024)
    max_pending: int = Field(
        default=100_000, ge=1, description="accepted events not yet acknowledged (queue bound)"
    )
    emit_timeout_ms: int = Field(
        default=100, ge=0, description="longest a full queue makes an off-loop emit wait"
    )
    delivery_timeout_ms: int = Field(default=30_000, ge=100)


class OutboxSettings(Section):
    """The transactional outbox table and its relay."""

    table: str = "listing_events_outbox"
    batch_size: int = Field(default=500, ge=1)
    poll_interval_ms: int = Field(default=200, ge=1)
    max_backoff_ms: int = Field(default=10_000, ge=1)


__all__ = ["DlqSettings", "KafkaSettings", "OutboxSettings", "ProducerSettings"]
