"""`stream-indexer run`: the indexer service itself (what each pod runs).

Exit codes: 0 stopped by a signal, 2 bad configuration, 3 start-up failed (one line on stderr
names what to change; `startup_errors`).
"""

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
    from stream_indexer.app.startup_errors import StartupFailedError, report
    from stream_indexer.observability.logging_setup import configure_logging

    settings = settings_from_args(args)
    configure_logging(settings.log.level, settings.log.format)
    try:
        asyncio.run(serve(settings))
    except StartupFailedError as exc:
        return report(exc)
    return 0
