"""Configuration: every knob of the pipeline, read once at start and validated there.

Environment variables use the prefix `STREAM_INDEXER_` and `__` for nesting
(`STREAM_INDEXER_KAFKA__BOOTSTRAP_SERVERS`); CLI flags override them. Secrets are
`SecretStr`, may come from files in `STREAM_INDEXER_SECRETS_DIR`, and are never printed.
A bad value raises `ConfigError` naming the setting as its environment variable, so an
operator can fix it without reading code.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from stream_indexer.addresses import address_secrets, checked_dsn, checked_hosts, normalize_host
from stream_indexer.errors import AddressError, ConfigError
from stream_indexer.masking import mask_text, mask_url, remember, secret_forms, strings_in

ENV_PREFIX = "STREAM_INDEXER_"
MIB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class KafkaSettings(_Section):
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


class DlqSettings(_Section):
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
    )(_split_csv)

    @field_validator("required_stores")
    @classmethod
    def _some_store_required(cls, stores: list[str]) -> list[str]:
        if not stores:
            raise ValueError("at least one of postgres, kafka must be required")
        return stores


class OpenSearchSettings(_Section):
    """The sink: cluster address, index names and bulk behaviour."""

    hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://127.0.0.1:9200"])
    index: str = Field(default="marketplace_listings", description="alias searches use")
    physical_index: str | None = Field(
        default=None, description="the first physical index; defaults to `<index>_v1`"
    )
    write_alias: str | None = Field(
        default=None, description="alias pods write through; defaults to `<index>_write`"
    )
    username: str | None = None
    password: SecretStr | None = None
    auth: Literal["basic", "sigv4"] = Field(
        default="basic", description="sigv4: AWS request signing (needs the `aws` extra)"
    )
    aws_region: str | None = None
    aws_service: Literal["es", "aoss"] = Field(
        default="es", description="es: OpenSearch Service; aoss: OpenSearch Serverless"
    )
    verify_certs: bool = True
    ca_certs: str | None = None
    client_cert: str | None = Field(default=None, description="client certificate (mTLS)")
    client_key: str | None = None
    client_key_password: SecretStr | None = None
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_in_flight_bulks: int = Field(default=4, ge=1)
    bulk_max_docs: int = Field(
        default=10_000, ge=1, description="documents per request when batches are combined"
    )
    bulk_max_bytes: int = Field(
        default=20 * MIB, ge=1024, description="body bytes per request when batches are combined"
    )
    http_compress: bool = False
    create_index: bool = Field(default=True, description="create index and alias on start")
    number_of_shards: int = Field(default=1, ge=1)
    number_of_replicas: int = Field(default=0, ge=0)

    _split_hosts = field_validator("hosts", mode="before")(_split_csv)

    _check_hosts = field_validator("hosts")(checked_hosts)

    @model_validator(mode="after")
    def _distinct_names(self) -> OpenSearchSettings:
        """The search alias, the write alias and the first physical index are three names."""
        physical = self.physical_index or f"{self.index}_v1"
        write = self.write_alias or f"{self.index}_write"
        if len({self.index, physical, write}) < 3:
            raise ValueError(
                f"{ENV_PREFIX}OPENSEARCH__WRITE_ALIAS, {ENV_PREFIX}OPENSEARCH__INDEX and "
                f"{ENV_PREFIX}OPENSEARCH__PHYSICAL_INDEX must name three different things"
            )
        return self

    @model_validator(mode="after")
    def _sigv4_complete(self) -> OpenSearchSettings:
        """SigV4 replaces basic auth and needs the region the signature is scoped to."""
        if self.auth == "sigv4":
            if self.aws_region is None:
                raise ValueError(
                    f"{ENV_PREFIX}OPENSEARCH__AWS_REGION must be set when "
                    f"{ENV_PREFIX}OPENSEARCH__AUTH is sigv4"
                )
            if self.username is not None:
                raise ValueError(
                    f"{ENV_PREFIX}OPENSEARCH__USERNAME must be unset when "
                    f"{ENV_PREFIX}OPENSEARCH__AUTH is sigv4 (credentials come from AWS)"
                )
        return self


class BatchSettings(_Section):
    """How each partition worker groups records into bulk requests."""

    max_records: int = Field(default=1_000, ge=1)
    max_bytes: int = Field(default=5 * MIB, ge=1024)
    linger_ms: int = Field(default=50, ge=0)
    buffer_max_records: int = Field(
        default=2_000, ge=1, description="per-partition buffer; full pauses that partition"
    )
    buffer_max_bytes: int = Field(default=8 * MIB, ge=1024)


class RetrySettings(_Section):
    """Backoff for transient failures (full jitter) and the per-record attempt budget."""

    initial_backoff_ms: int = Field(default=200, ge=1)
    multiplier: float = Field(default=2.0, ge=1.0)
    max_backoff_ms: int = Field(default=30_000, ge=1)
    max_attempts: int = Field(default=5, ge=1)
    max_elapsed_s: float = Field(default=300.0, gt=0)
    circuit_failure_threshold: int = Field(
        default=3, ge=1, description="consecutive failed bulk requests that open the circuit"
    )
    circuit_probe_max_s: float = Field(
        default=5.0, gt=0, description="longest wait between probes while the circuit is open"
    )
    circuit_probe_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="how long one probe of the sink may take (a blackholed sink never answers)",
    )


class PostgresSettings(_Section):
    """The DLQ table's database (also the default source for thin events)."""

    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=4, ge=1)
    command_timeout_s: float = Field(default=10.0, gt=0)

    _check_dsn = field_validator("dsn")(checked_dsn)


class SourceSettings(_Section):
    """Where thin events (index without `data`) load their listing from."""

    dsn: SecretStr | None = Field(default=None, description="defaults to postgres.dsn")
    table: str = "listings"
    id_column: str = "id"
    version_column: str = Field(
        default="version",
        description="the row's version (integer, or timestamp -> µs) for reindex and verify",
    )

    _check_dsn = field_validator("dsn")(checked_dsn)

    @field_validator("table", "id_column", "version_column")
    @classmethod
    def _identifier(cls, value: str) -> str:
        parts = value.split(".")
        if not all(part.replace("_", "").isalnum() and not part[:1].isdigit() for part in parts):
            raise ValueError("not a plain SQL identifier (letters, digits, _ and one '.')")
        return value


class MetricsSettings(_Section):
    """The HTTP server for /metrics, /healthz and /readyz."""

    host: str = "0.0.0.0"
    port: int = Field(default=9108, ge=0, le=65535)
    enabled: bool = True
    stall_timeout_s: float = Field(
        default=300.0, gt=0, description="/healthz fails when behind and no commit for this long"
    )


class LogSettings(_Section):
    """Log level and format (JSON for machines, console for people)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


class ProducerSettings(_Section):
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


class OutboxSettings(_Section):
    """The transactional outbox table and its relay."""

    table: str = "listing_events_outbox"
    batch_size: int = Field(default=500, ge=1)
    poll_interval_ms: int = Field(default=200, ge=1)
    max_backoff_ms: int = Field(default=10_000, ge=1)


class VerifySettings(_Section):
    """`stream-indexer verify`: how the drift check reads and where it reports."""

    sample: int = Field(
        default=1_000,
        ge=1,
        le=10_000,
        description="source rows and live documents checked without flags",
    )
    page_size: int = Field(default=1_000, ge=1, le=10_000, description="rows and docs per read")
    recheck_after_s: float = Field(
        default=5.0,
        ge=0,
        description="drift found is looked up again after this long (events still in flight)",
    )
    pushgateway_url: str | None = Field(
        default=None, description="Prometheus Pushgateway the run's metrics are pushed to"
    )
    pushgateway_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("pushgateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_host(value)
        except AddressError as exc:
            raise ValueError(f"(value not shown) {exc}") from None


class Settings(BaseSettings):
    """All settings; build with `load_settings()` to get a `ConfigError` on bad input."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        secrets_nested_delimiter="__",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Secret files may set nested fields too (`postgres__dsn`), not only sections."""
        nested_secrets = NestedSecretsSettingsSource(file_secret_settings, secrets_prefix="")
        return init_settings, env_settings, dotenv_settings, nested_secrets

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    dlq: DlqSettings = Field(default_factory=DlqSettings)
    opensearch: OpenSearchSettings = Field(default_factory=OpenSearchSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    shutdown_timeout_s: float = Field(default=25.0, gt=0)
    rebalance_timeout_s: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _producer_follows_kafka(self) -> Settings:
        """One switch per producer knob: `PRODUCER__ENABLE_IDEMPOTENCE` and
        `PRODUCER__COMPRESSION`, when not set, follow `KAFKA__ENABLE_IDEMPOTENCE` and
        `KAFKA__PRODUCER_COMPRESSION`; set, they tune the producer library alone (its
        services may talk to another cluster, with other ACLs, than the indexer)."""
        given = self.producer.model_fields_set
        if "enable_idempotence" not in given:
            self.producer.enable_idempotence = self.kafka.enable_idempotence
        if "compression" not in given:
            self.producer.compression = self.kafka.producer_compression
        return self

    @property
    def dlq_topic(self) -> str:
        return self.dlq.topic or f"{self.kafka.topic}.dlq"

    @property
    def physical_index(self) -> str:
        return self.opensearch.physical_index or f"{self.opensearch.index}_v1"

    @property
    def write_alias(self) -> str:
        return self.opensearch.write_alias or f"{self.opensearch.index}_write"

    @property
    def source_dsn(self) -> str:
        secret = self.source.dsn or self.postgres.dsn
        return secret.get_secret_value()


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable an error location refers to (`kafka.topic` -> KAFKA__TOPIC)."""
    parts = [str(part).upper() for part in location if not isinstance(part, int)]
    return ENV_PREFIX + "__".join(parts)


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Read env (and secret files), apply `overrides` (dotted keys), validate.

    Raises `ConfigError` whose message lists each bad setting by its environment name.
    """
    nested: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        head, _, tail = dotted.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR") or None
    try:
        settings = Settings(_secrets_dir=secrets_dir, **nested)
    except SettingsError as exc:
        # raised before validation, e.g. STREAM_INDEXER_KAFKA='notjson' for a whole section
        field = re.search(r'field "([^"]+)"', str(exc))
        name = env_name(tuple(field.group(1).split("."))) if field else f"{ENV_PREFIX}SECRETS_DIR"
        raise ConfigError(f"invalid configuration: {name}: {mask_text(str(exc))}") from None
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors(include_url=False))
        raise ConfigError(f"invalid configuration: {problems}") from None
    remember(secret_values(settings))
    return settings


def _problem(error: Any) -> str:
    """`VARIABLE: reason`, without the rejected value: whatever a validator put in its
    message, every string of the input (a secret, perhaps) is masked out of it."""
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{env_name(error['loc'])}: {mask_text(message, strings_in(error.get('input')))}"


def secret_values(settings: Settings) -> set[str]:
    """Every secret these settings hold, in each form a message might quote it."""
    found: set[str] = set()
    for secret in (
        settings.kafka.sasl_username,
        settings.kafka.sasl_password,
        settings.kafka.ssl_key_password,
        settings.opensearch.password,
        settings.opensearch.client_key_password,
    ):
        if secret is not None:
            found |= secret_forms(secret.get_secret_value())
    for dsn in (settings.postgres.dsn, settings.source.dsn):
        if dsn is not None:
            found |= address_secrets(dsn.get_secret_value())
    for host in [*settings.opensearch.hosts, settings.verify.pushgateway_url or ""]:
        found |= address_secrets(host) - {host}  # the address itself is not secret, its password is
    return found


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret shown as `**********`."""
    data = settings.model_dump(mode="json")
    data["opensearch"]["hosts"] = [mask_url(host) for host in settings.opensearch.hosts]
    if settings.verify.pushgateway_url is not None:
        data["verify"]["pushgateway_url"] = mask_url(settings.verify.pushgateway_url)
    data["dlq"]["topic"] = settings.dlq_topic
    data["opensearch"]["physical_index"] = settings.physical_index
    data["opensearch"]["write_alias"] = settings.write_alias
    return data


__all__ = [
    "BatchSettings",
    "DlqSettings",
    "KafkaSettings",
    "LogSettings",
    "MetricsSettings",
    "OpenSearchSettings",
    "OutboxSettings",
    "PostgresSettings",
    "ProducerSettings",
    "RetrySettings",
    "Settings",
    "SourceSettings",
    "VerifySettings",
    "load_settings",
    "masked_dump",
    "secret_values",
]
