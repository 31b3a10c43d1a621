"""Settings: env prefix and nesting, overrides over env, errors naming the env var, masking."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from stream_indexer.errors import ConfigError
from stream_indexer.settings import load_settings, masked_dump

PREFIX = "STREAM_INDEXER_"
SECRET = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No STREAM_INDEXER_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(PREFIX):
            monkeypatch.delenv(name)
    yield


def setenv(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(PREFIX + name, value)


# -- defaults and the names docs/contract.md section 5 promises --------------------------


def test_defaults() -> None:
    settings = load_settings()
    assert settings.kafka.topic == "listings.changes"
    assert settings.kafka.group_id == "stream-indexer"
    assert settings.dlq_topic == "listings.changes.dlq"
    assert settings.opensearch.index == "marketplace_listings"
    assert settings.physical_index == "marketplace_listings_v1"


@pytest.mark.parametrize(
    ("env", "value", "read"),
    [
        ("KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092",
         lambda s: s.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"),
        ("KAFKA__TOPIC", "orders.changes", lambda s: s.kafka.topic == "orders.changes"),
        ("KAFKA__GROUP_ID", "indexer-blue", lambda s: s.kafka.group_id == "indexer-blue"),
        ("DLQ__TOPIC", "poison.listings", lambda s: s.dlq_topic == "poison.listings"),
        ("OPENSEARCH__HOSTS", "https://os-1:9200",
         lambda s: s.opensearch.hosts == ["https://os-1:9200"]),
        ("OPENSEARCH__INDEX", "listings_live",
         lambda s: s.opensearch.index == "listings_live"
         and s.physical_index == "listings_live_v1"),
        ("POSTGRES__DSN", "postgresql://app:pw@db:5432/app",
         lambda s: s.postgres.dsn.get_secret_value() == "postgresql://app:pw@db:5432/app"),
        ("METRICS__PORT", "9300", lambda s: s.metrics.port == 9300),
    ],
)  # fmt: skip
def test_each_documented_env_name_is_read(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, read: Any
) -> None:
    setenv(monkeypatch, **{env: value})
    assert read(load_settings())


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("stream_indexer_kafka__topic", "lower.case")
    assert load_settings().kafka.topic == "lower.case"


def test_dlq_topic_defaults_to_the_kafka_topic_plus_dlq(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, KAFKA__TOPIC="orders.changes")
    assert load_settings().dlq_topic == "orders.changes.dlq"


def test_nested_env_fills_one_field_and_keeps_the_section_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setenv(monkeypatch, BATCH__LINGER_MS="7", RETRY__MAX_ATTEMPTS="9")
    settings = load_settings()
    assert settings.batch.linger_ms == 7
    assert settings.batch.max_records == 2_000  # untouched default of the same section
    assert settings.retry.max_attempts == 9


# -- overrides (CLI flags) beat the environment --------------------------------------------


def test_overrides_beat_env_and_leave_other_env_fields_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setenv(
        monkeypatch,
        KAFKA__TOPIC="from.env",
        KAFKA__BOOTSTRAP_SERVERS="env-broker:9092",
        METRICS__PORT="9000",
    )
    settings = load_settings({"kafka.topic": "from.cli", "metrics.port": "9001"})
    assert settings.kafka.topic == "from.cli"
    assert settings.metrics.port == 9001
    assert settings.kafka.bootstrap_servers == "env-broker:9092"  # deep merge, not replace


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset CLI flag (None) must not hide the environment value."""
    setenv(monkeypatch, KAFKA__TOPIC="from.env")
    assert load_settings({"kafka.topic": None}).kafka.topic == "from.env"


def test_top_level_override() -> None:
    assert load_settings({"shutdown_timeout_s": 3}).shutdown_timeout_s == 3


# -- errors name the environment variable --------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("METRICS__PORT", "not-a-port"),
        ("METRICS__PORT", "70000"),
        ("KAFKA__SESSION_TIMEOUT_MS", "5"),
        ("KAFKA__SECURITY_PROTOCOL", "CARRIER_PIGEON"),
        ("LOG__LEVEL", "LOUD"),
        ("BATCH__MAX_RECORDS", "0"),
        ("SOURCE__TABLE", "listings; drop table x"),
        ("SHUTDOWN_TIMEOUT_S", "-1"),
    ],
)
def test_a_bad_env_value_raises_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str
) -> None:
    setenv(monkeypatch, **{env: value})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{PREFIX}{env}:" in message
    assert "\n" not in message


def test_every_bad_setting_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, METRICS__PORT="x", BATCH__LINGER_MS="-5")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "STREAM_INDEXER_METRICS__PORT" in str(caught.value)
    assert "STREAM_INDEXER_BATCH__LINGER_MS" in str(caught.value)


def test_a_bad_override_is_named_by_its_env_var_too() -> None:
    with pytest.raises(ConfigError, match="STREAM_INDEXER_METRICS__PORT"):
        load_settings({"metrics.port": "abc"})


def test_an_unknown_section_field_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, KAFKA__BOOTSTRAP_SERVER="typo:9092")  # missing S
    with pytest.raises(ConfigError, match="STREAM_INDEXER_KAFKA__BOOTSTRAP_SERVER:"):
        load_settings()


def test_an_unknown_override_field_is_rejected() -> None:
    with pytest.raises(ConfigError, match="STREAM_INDEXER_OPENSEARCH__HOST:"):
        load_settings({"opensearch.host": "http://x:9200"})


def test_a_section_variable_that_is_not_json_raises_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setenv(monkeypatch, KAFKA="notjson")
    with pytest.raises(ConfigError, match="STREAM_INDEXER_KAFKA"):
        load_settings()


# -- OpenSearch hosts -----------------------------------------------------------------------


def test_hosts_are_comma_separated_trimmed_and_without_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setenv(monkeypatch, OPENSEARCH__HOSTS=" http://os-1:9200/ ,https://os-2:9200,, ")
    assert load_settings().opensearch.hosts == ["http://os-1:9200", "https://os-2:9200"]


def test_hosts_from_an_override_string_are_split_too() -> None:
    settings = load_settings({"opensearch.hosts": "http://a:9200,http://b:9200"})
    assert settings.opensearch.hosts == ["http://a:9200", "http://b:9200"]


@pytest.mark.parametrize("hosts", ["os-1:9200", "http://ok:9200,ftp://bad:21", "", " , "])
def test_hosts_need_a_scheme_and_at_least_one_entry(
    monkeypatch: pytest.MonkeyPatch, hosts: str
) -> None:
    setenv(monkeypatch, OPENSEARCH__HOSTS=hosts)
    with pytest.raises(ConfigError, match="STREAM_INDEXER_OPENSEARCH__HOSTS:"):
        load_settings()


# -- secrets ---------------------------------------------------------------------------------


def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(
        monkeypatch,
        POSTGRES__DSN=f"postgresql://app:{SECRET}@db/app",
        SOURCE__DSN=f"postgresql://ro:{SECRET}@replica/app",
        KAFKA__SASL_PASSWORD=SECRET,
        OPENSEARCH__PASSWORD=SECRET,
        OPENSEARCH__USERNAME="indexer",
    )


def test_secrets_are_masked_in_masked_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_env(monkeypatch)
    settings = load_settings()
    dump = masked_dump(settings)
    assert SECRET not in json.dumps(dump)
    assert dump["postgres"]["dsn"] == "**********"
    assert dump["source"]["dsn"] == "**********"
    assert dump["kafka"]["sasl_password"] == "**********"
    assert dump["opensearch"]["password"] == "**********"
    assert dump["opensearch"]["username"] == "indexer"  # not a secret
    # ... while the running service still gets the real values
    assert settings.source_dsn == f"postgresql://ro:{SECRET}@replica/app"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SECRET


def test_secrets_are_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_env(monkeypatch)
    settings = load_settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_masked_dump_shows_derived_names() -> None:
    dump = masked_dump(load_settings({"kafka.topic": "t1", "opensearch.index": "idx"}))
    assert dump["dlq"]["topic"] == "t1.dlq"
    assert dump["opensearch"]["physical_index"] == "idx_v1"
    json.dumps(dump)  # plain data only


def test_source_dsn_falls_back_to_the_postgres_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, POSTGRES__DSN="postgresql://main/db")
    assert load_settings().source_dsn == "postgresql://main/db"


def test_credentials_in_host_urls_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, OPENSEARCH__HOSTS=f"https://indexer:{SECRET}@os-1:9200")
    assert SECRET not in json.dumps(masked_dump(load_settings()))


def test_producer_knobs_follow_the_kafka_section_unless_set() -> None:
    followed = load_settings(
        {"kafka.enable_idempotence": False, "kafka.producer_compression": "zstd"}
    )
    assert followed.producer.enable_idempotence is False
    assert followed.producer.compression == "zstd"
    own = load_settings(
        {
            "kafka.enable_idempotence": False,
            "producer.enable_idempotence": True,
            "kafka.producer_compression": "zstd",
            "producer.compression": "gzip",
        }
    )
    assert own.producer.enable_idempotence is True and own.producer.compression == "gzip"
