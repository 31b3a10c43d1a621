"""`stream-indexer config show`: effective settings as JSON, flags over env, secrets masked."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from stream_indexer.cli import main
from stream_indexer.cli.options import SETTING_FLAGS

PREFIX = "STREAM_INDEXER_"
SECRET = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith(PREFIX):
            monkeypatch.delenv(name)
    yield


def show(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, Any]:
    code = main(["config", "show", *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_show_prints_the_effective_configuration_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = show(capsys)
    assert data["kafka"]["topic"] == "listings.changes"
    assert data["kafka"]["group_id"] == "stream-indexer"
    assert data["dlq"]["topic"] == "listings.changes.dlq"  # derived default, shown resolved
    assert data["opensearch"]["index"] == "marketplace_listings"
    assert data["opensearch"]["physical_index"] == "marketplace_listings_v1"


def test_show_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_INDEXER_KAFKA__TOPIC", "env.topic")
    monkeypatch.setenv("STREAM_INDEXER_OPENSEARCH__HOSTS", "http://a:9200,http://b:9200")
    monkeypatch.setenv("STREAM_INDEXER_METRICS__PORT", "9400")
    data = show(capsys)
    assert data["kafka"]["topic"] == "env.topic"
    assert data["dlq"]["topic"] == "env.topic.dlq"
    assert data["opensearch"]["hosts"] == ["http://a:9200", "http://b:9200"]
    assert data["metrics"]["port"] == 9400


def test_flags_override_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_INDEXER_KAFKA__TOPIC", "env.topic")
    monkeypatch.setenv("STREAM_INDEXER_KAFKA__GROUP_ID", "env-group")
    monkeypatch.setenv("STREAM_INDEXER_METRICS__PORT", "9400")
    data = show(
        capsys,
        "--topic", "cli.topic",
        "--metrics-port", "9500",
        "--opensearch-hosts", "https://x:9200,https://y:9200",
        "--index", "cli_index",
        "--dlq-topic", "cli.dead",
        "--bootstrap-servers", "cli-broker:9092",
        "--log-level", "DEBUG",
    )  # fmt: skip
    assert data["kafka"]["topic"] == "cli.topic"
    assert data["kafka"]["group_id"] == "env-group"  # no flag given: env stays
    assert data["kafka"]["bootstrap_servers"] == "cli-broker:9092"
    assert data["metrics"]["port"] == 9500
    assert data["opensearch"]["hosts"] == ["https://x:9200", "https://y:9200"]
    assert data["opensearch"]["index"] == "cli_index"
    assert data["dlq"]["topic"] == "cli.dead"
    assert data["log"]["level"] == "DEBUG"


def test_every_setting_flag_reaches_its_setting(capsys: pytest.CaptureFixture[str]) -> None:
    values = {
        "--bootstrap-servers": "b:1",
        "--topic": "t",
        "--group-id": "g",
        "--dlq-topic": "d",
        "--opensearch-hosts": "http://o:1",
        "--index": "i",
        "--postgres-dsn": "postgresql://p/db",
        "--metrics-port": "1234",
        "--log-level": "ERROR",
        "--log-format": "console",
    }
    assert set(values) == set(SETTING_FLAGS)  # a new flag needs a line here
    argv = [part for flag, value in values.items() for part in (flag, value)]
    data = show(capsys, *argv)
    expected = {
        "kafka.bootstrap_servers": "b:1",
        "kafka.topic": "t",
        "kafka.group_id": "g",
        "dlq.topic": "d",
        "opensearch.hosts": ["http://o:1"],
        "opensearch.index": "i",
        "postgres.dsn": "**********",  # set, and still masked
        "metrics.port": 1234,
        "log.level": "ERROR",
        "log.format": "console",
    }
    for dotted, value in expected.items():
        section, field = dotted.split(".")
        assert data[section][field] == value, dotted


def test_secrets_are_masked_in_the_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_INDEXER_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("STREAM_INDEXER_OPENSEARCH__PASSWORD", SECRET)
    monkeypatch.setenv("STREAM_INDEXER_SOURCE__DSN", f"postgresql://ro:{SECRET}@replica/db")
    code = main(["config", "show", "--postgres-dsn", f"postgresql://app:{SECRET}@db/app"])
    out, err = capsys.readouterr()
    assert code == 0
    assert SECRET not in out
    assert SECRET not in err
    data = json.loads(out)
    assert data["postgres"]["dsn"] == "**********"
    assert data["source"]["dsn"] == "**********"
    assert data["kafka"]["sasl_password"] == "**********"
    assert data["opensearch"]["password"] == "**********"


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("STREAM_INDEXER_METRICS__PORT", "not-a-port", "STREAM_INDEXER_METRICS__PORT"),
        ("STREAM_INDEXER_OPENSEARCH__HOSTS", "os-1:9200", "STREAM_INDEXER_OPENSEARCH__HOSTS"),
        ("STREAM_INDEXER_KAFKA__NOT_A_FIELD", "1", "STREAM_INDEXER_KAFKA__NOT_A_FIELD"),
    ],
)
def test_bad_env_exits_2_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: str,
    value: str,
    named: str,
) -> None:
    monkeypatch.setenv(env, value)
    code = main(["config", "show"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("stream-indexer: ")
    assert named in lines[0]
    assert "Traceback" not in err


def test_a_bad_flag_value_exits_2_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["config", "show", "--metrics-port", "huge"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "STREAM_INDEXER_METRICS__PORT" in err


def test_a_bad_secret_value_is_not_echoed_in_the_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error names the variable; it never prints the rejected secret."""
    monkeypatch.setenv("STREAM_INDEXER_METRICS__PORT", "x")
    code = main(["config", "show", "--postgres-dsn", f"postgresql://app:{SECRET}@db/app"])
    _out, err = capsys.readouterr()
    assert code == 2
    assert SECRET not in err
