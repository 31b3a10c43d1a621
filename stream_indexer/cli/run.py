"""`stream-indexer run`: the indexer service itself (what each pod runs)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from stream_indexer.cli.options import add_setting_flags, settings_from_args


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="consume listing events and keep the OpenSearch index in step"
    )
    add_setting_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from stream_indexer.app.runner import serve
    from stream_indexer.observability.logging_setup import configure_logging

    settings = settings_from_args(args)
    configure_logging(settings.log.level, settings.log.format)
    asyncio.run(serve(settings))
    return 0
