"""configure_logging: JSON lines with extra fields, console lines, secrets never printed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from stream_indexer.masking import mask_text
from stream_indexer.observability.logging_setup import configure_logging
from stream_indexer.settings import Settings, masked_dump


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_standard_and_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("stream_indexer.pipeline.worker").info(
        "dead-lettered %s",
        "record",
        extra={"topic": "listings.changes", "partition": 3, "offset": 1017, "listing_id": 42},
    )
    (line,) = _json_lines(capsys.readouterr().err)
    assert line["level"] == "INFO"
    assert line["logger"] == "stream_indexer.pipeline.worker"
    assert line["msg"] == "dead-lettered record"
    assert (line["topic"], line["partition"], line["offset"], line["listing_id"]) == (
        "listings.changes",
        3,
        1017,
        42,
    )
    assert isinstance(line["ts"], str) and line["ts"].endswith("+00:00")


def test_level_filters_and_exceptions_are_included(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "json")
    log = logging.getLogger("stream_indexer.test")
    log.info("hidden")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    (line,) = _json_lines(capsys.readouterr().err)
    assert line["msg"] == "failed" and line["level"] == "ERROR"
    assert "ValueError: boom" in str(line["exc"])


def test_reconfiguring_replaces_our_handler_only(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "console")
    logging.getLogger("stream_indexer.x").info("once", extra={"partition": 1})
    err = capsys.readouterr().err
    assert err.count("once") == 1
    assert "INFO" in err and "stream_indexer.x: once" in err and "partition=1" in err


def test_secrets_are_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(postgres={"dsn": "postgresql://indexer:hunter2@db:5432/app"})
    configure_logging("DEBUG", "json")
    log = logging.getLogger("stream_indexer.config")
    log.info("effective config", extra={"config": masked_dump(settings)})
    log.info("dsn object %s", settings.postgres.dsn, extra={"dsn": settings.postgres.dsn})
    log.error("connect failed: could not reach postgresql://indexer:hunter2@db:5432/app")
    log.info("opensearch auth", extra={"password": "hunter2", "api_key": SecretStr("hunter2")})
    configure_logging("DEBUG", "console")
    log.error("retrying https://svc:hunter2@search:9200/_bulk", extra={"token": "hunter2"})
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "postgresql://indexer:**********@db:5432/app" in err


def test_the_masker_masks_only_url_passwords() -> None:
    assert (
        mask_text("amqp://u:p@h/v and http://h:9200/x")
        == "amqp://u:**********@h/v and http://h:9200/x"
    )
    assert mask_text("listing 42 at 12:30") == "listing 42 at 12:30"


def test_rejects_unknown_format_and_level() -> None:
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        configure_logging("LOUD", "json")
