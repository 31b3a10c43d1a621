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
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from stream_indexer.addresses import address_secrets
from stream_indexer.errors import ConfigError
from stream_indexer.masking import mask_text, mask_url, remember, secret_forms, strings_in
from stream_indexer.settings.base import ENV_PREFIX, MIB
from stream_indexer.settings.jobs import ReindexSettings, VerifySettings
from stream_indexer.settings.kafka import (
    DlqSettings,
    KafkaSettings,
    OutboxSettings,
    ProducerSettings,
)
from stream_indexer.settings.observability import LogSettings, MetricsSettings
from stream_indexer.settings.sink import BatchSettings, OpenSearchSettings, RetrySettings
from stream_indexer.settings.stores import PostgresSettings, SourceSettings


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
    reindex: ReindexSettings = Field(default_factory=ReindexSettings)
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
    "ENV_PREFIX",
    "MIB",
    "BatchSettings",
    "DlqSettings",
    "KafkaSettings",
    "LogSettings",
    "MetricsSettings",
    "OpenSearchSettings",
    "OutboxSettings",
    "PostgresSettings",
    "ProducerSettings",
    "ReindexSettings",
    "RetrySettings",
    "Settings",
    "SourceSettings",
    "VerifySettings",
    "load_settings",
    "masked_dump",
    "secret_values",
]
