"""Command line: `stream-indexer <command>`; each command lives in its own module here.

A command module exposes `register(subparsers)`, which adds its parser and sets
`handler(args) -> int` as the parser default. `main()` is the guard every command runs
under: a `ConfigError` becomes one line and exit code 2, any other uncaught exception one
line and exit code 1, both with secrets masked; the traceback (masked too) follows only when
the log level is DEBUG. Exit codes: 0 done, 1 failed (operational), 2 bad configuration or
usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from stream_indexer.errors import ConfigError
from stream_indexer.masking import mask_text

COMMAND_MODULES = (
    "run",
    "dev",
    "migrate",
    "config",
    "dlq",
    "produce",
    "verify",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-indexer",
        description="Keep an OpenSearch index of listings in step with Kafka change events.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"stream_indexer.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"stream_indexer.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _baseline_logging()
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        _report(args, f"stream-indexer: {_one_line(exc)}", exc)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("stream-indexer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        command = " ".join(_command_words(args))
        text = f"{type(exc).__name__}: {_one_line(exc)}"
        _report(args, f"stream-indexer {command}: {text}", exc)
        return EXIT_FAILED
    return code


def _baseline_logging() -> None:
    """Until a command sets up its own logging, records reach stderr masked (Python's
    last-resort handler would print a driver's warning, DSN and all, as it is)."""
    from stream_indexer.observability.logging_setup import configure_logging

    level = os.environ.get("STREAM_INDEXER_LOG__LEVEL", "").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        level = "WARNING"
    configure_logging(level, "console")


def _one_line(exc: BaseException) -> str:
    """The exception's text on one line, secrets masked (a driver may quote a DSN)."""
    return mask_text(" ".join(str(exc).split())) or type(exc).__name__


def _report(args: argparse.Namespace, line: str, exc: BaseException) -> None:
    print(line, file=sys.stderr, flush=True)
    if _debug(args):
        text = "".join(traceback.format_exception(exc))
        print(mask_text(text), file=sys.stderr, end="", flush=True)


def _debug(args: argparse.Namespace) -> bool:
    """Tracebacks only at DEBUG (flag or environment): operators get one line otherwise."""
    level = getattr(args, "setting_log_level", None) or os.environ.get(
        "STREAM_INDEXER_LOG__LEVEL", ""
    )
    return str(level).upper() == "DEBUG"


def _command_words(args: argparse.Namespace) -> list[str]:
    words = [str(args.command)]
    for name in ("config_action", "migrate_action", "dlq_action", "outbox_command"):
        value = getattr(args, name, None)
        if value:
            words.append(str(value))
    return words


if __name__ == "__main__":
    sys.exit(main())
