"""`cli.main` is the guard every command runs under: one masked line and a documented exit
code for any failure, a traceback only at DEBUG, and masked logging from the first record."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterator

import pytest

from stream_indexer import cli
from stream_indexer.errors import ConfigError
from stream_indexer.masking import forget_all, remember

SECRET = "guard-s3cret"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("STREAM_INDEXER_"):
            monkeypatch.delenv(name)
    forget_all()
    yield
    forget_all()
    for handler in list(logging.getLogger().handlers):
        if getattr(handler, "_stream_indexer", False):
            logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)


def run_with(
    monkeypatch: pytest.MonkeyPatch, handler: Callable[[argparse.Namespace], int], *argv: str
) -> int:
    """`config show` with its handler replaced by `handler`."""
    from stream_indexer.cli import config

    monkeypatch.setattr(config, "handle_show", handler)
    return cli.main(["config", "show", *argv])


def fail_with(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    def handler(_args: argparse.Namespace) -> int:
        raise exc

    return handler


def test_an_unexpected_error_is_one_masked_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    remember([SECRET])
    error = ValueError(f"invalid literal for int(): '{SECRET}'\n at postgresql://u:x@y@db/app")
    code = run_with(monkeypatch, fail_with(error))
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("stream-indexer config show: ValueError: ")
    assert SECRET not in err and "x@y" not in err and "Traceback" not in err


def test_a_config_error_is_one_masked_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    remember([SECRET])
    code = run_with(monkeypatch, fail_with(ConfigError(f"STREAM_INDEXER_X: bad {SECRET}")))
    _out, err = capsys.readouterr()
    assert code == 2
    assert err == "stream-indexer: STREAM_INDEXER_X: bad **********\n"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_at_debug_the_masked_traceback_follows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    remember([SECRET])
    argv = ("--log-level", "DEBUG") if how == "flag" else ()
    if how == "env":
        monkeypatch.setenv("STREAM_INDEXER_LOG__LEVEL", "debug")
    code = run_with(monkeypatch, fail_with(OSError(f"refused {SECRET}")), *argv)
    _out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" in err and SECRET not in err


def test_logging_before_a_command_configures_it_is_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python's last-resort handler would print a driver's warning as it is."""
    remember([SECRET])

    def handler(_args: argparse.Namespace) -> int:
        logging.getLogger("aiokafka").warning("sasl login failed for %s", SECRET)
        return 0

    assert run_with(monkeypatch, handler) == 0
    err = capsys.readouterr().err
    assert "sasl login failed for **********" in err and SECRET not in err
