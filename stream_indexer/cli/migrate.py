"""`stream-indexer migrate up|down|status`: apply the schema migrations before pods start
(run by hand, by `make demo`, or as the helm pre-install/pre-upgrade hook).

The DSN comes from settings (`STREAM_INDEXER_POSTGRES__DSN`) unless `--dsn` is given; both
are parsed before connecting, and one that cannot be parsed exits 2 naming where it came
from. A database or migration-file problem prints one line (secrets masked) and exits 1;
nothing else is printed on stderr, so a hook's log shows exactly why it failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import asyncpg

from stream_indexer.addresses import AddressError, address_secrets, normalize_dsn
from stream_indexer.app.migrate import (
    Migration,
    MigrationError,
    current_version,
    load_migrations,
    migrate_down,
    migrate_up,
)
from stream_indexer.errors import ConfigError
from stream_indexer.masking import mask_text, remember
from stream_indexer.settings import load_settings

_FAILURES = (
    MigrationError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    ValueError,  # e.g. a DSN option asyncpg refuses (the DSN itself is parsed at load)
)


def _steps(value: str) -> int:
    steps = int(value)
    if steps < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return steps


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply or revert the Postgres schema migrations",
        description="Apply or revert the Postgres schema migrations (golang-migrate layout).",
    )
    actions = parser.add_subparsers(dest="migrate_action", required=True, metavar="ACTION")
    for name, help_text in (
        ("up", "apply pending migrations (all, or --steps N)"),
        ("down", "revert applied migrations (1, or --steps N)"),
        ("status", "show the database's version and the pending migrations"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument("--dsn", help="Postgres DSN (default: settings postgres.dsn)")
        action.add_argument(
            "--path", type=Path, help="migrations directory (default: the shipped migrations)"
        )
        if name != "status":
            action.add_argument("--steps", type=_steps, help="how many migrations")
        action.set_defaults(handler=handle)


def _dsn(args: argparse.Namespace) -> str:
    if not args.dsn:
        return load_settings().postgres.dsn.get_secret_value()
    remember(address_secrets(str(args.dsn)))
    try:
        return normalize_dsn(str(args.dsn))
    except AddressError as exc:
        raise ConfigError(f"--dsn: not a usable Postgres DSN (value not shown): {exc}") from None


def _one_line(exc: BaseException) -> str:
    text = mask_text(" ".join(str(exc).split())) or type(exc).__name__
    return f"stream-indexer migrate: {text}"


async def _run(args: argparse.Namespace, dsn: str) -> None:
    migrations = {m.version: m for m in load_migrations(args.path)}

    def label(version: int | None) -> str:
        if version is None:
            return "none"
        migration: Migration | None = migrations.get(version)
        return migration.label if migration else str(version)

    if args.migrate_action == "up":
        applied = await migrate_up(dsn, args.path, steps=args.steps)
        for version in applied:
            print(f"applied {label(version)}")
        if not applied:
            print(f"nothing to apply; at version {label((await current_version(dsn))[0])}")
    elif args.migrate_action == "down":
        reverted = await migrate_down(dsn, args.path, steps=args.steps or 1)
        for version in reverted:
            print(f"reverted {label(version)}")
        if not reverted:
            print("nothing to revert; no migration is applied")
    else:
        at, dirty = await current_version(dsn)
        state = " (dirty)" if dirty else ""
        print(f"version: {label(at)}{state}")
        pending = [m for v, m in sorted(migrations.items()) if at is None or v > at]
        for migration in pending:
            print(f"pending: {migration.label}")


def handle(args: argparse.Namespace) -> int:
    dsn = _dsn(args)
    try:
        asyncio.run(_run(args, dsn))
    except _FAILURES as exc:
        print(_one_line(exc), file=sys.stderr)
        return 1
    return 0
