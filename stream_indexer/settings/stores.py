"""Core settings, databases: the DLQ table's Postgres and the source table of listings."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from stream_indexer.addresses import checked_dsn
from stream_indexer.settings.base import Section


class PostgresSettings(Section):
    """The DLQ table's database (also the default source for thin events)."""

    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=4, ge=1)
    command_timeout_s: float = Field(default=10.0, gt=0)

    _check_dsn = field_validator("dsn")(checked_dsn)


class SourceSettings(Section):
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


__all__ = ["PostgresSettings", "SourceSettings"]
