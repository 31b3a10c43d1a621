"""`stream-indexer config show`: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stream_indexer.cli.options import add_setting_flags, settings_from_args
from stream_indexer.settings import masked_dump


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config", help="inspect the configuration"
    )
    actions = parser.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the effective configuration (secrets masked)")
    add_setting_flags(show)
    show.set_defaults(handler=handle_show)


def handle_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    json.dump(masked_dump(settings), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0
