"""Core settings, sink side: the OpenSearch cluster, bulk batching, retries and the circuit."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from stream_indexer.addresses import checked_hosts
from stream_indexer.settings.base import ENV_PREFIX, MIB, Section, split_csv


class OpenSearchSettings(Section):
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
    adaptive_concurrency: bool = Field(
        default=False,
        description="learn the bulk requests in flight (1..max_in_flight_bulks) from latency",
    )
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

    _split_hosts = field_validator("hosts", mode="before")(split_csv)

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


class BatchSettings(Section):
    """How each partition worker groups records into bulk requests."""

    max_records: int = Field(
        default=2_000, ge=1, description="records per batch (a backlog fills it, linger cuts it)"
    )
    max_bytes: int = Field(default=5 * MIB, ge=1024)
    linger_ms: int = Field(default=50, ge=0)
    buffer_max_records: int = Field(
        default=2_000, ge=1, description="per-partition buffer; full pauses that partition"
    )
    buffer_max_bytes: int = Field(default=8 * MIB, ge=1024)


class RetrySettings(Section):
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


__all__ = ["BatchSettings", "OpenSearchSettings", "RetrySettings"]
