"""Command line: `stream-indexer <command>`; each command lives in its own module here.

A command module exposes `register(subparsers)`, which adds its parser and sets
`handler(args) -> int` as the parser default. `main()` turns `ConfigError` into a one-line
message and exit code 2, so bad configuration never shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from stream_indexer.errors import ConfigError

COMMAND_MODULES = (
    "run",
    "dev",
    "migrate",
    "config",
    "dlq",
    "produce",
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"stream-indexer: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
