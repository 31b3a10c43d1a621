"""`stream-indexer reindex`: rebuild the index into a new one while live indexing goes on.

    reindex run      [--source postgres|topic] [--mapping FILE] [--max-rate N] [--grace-s S]
    reindex start    the same, but stop once caught up (no cutover)
    reindex cutover  [--grace-s S]   continue the open run: catch up, switch the aliases, grace
    reindex rollback [--grace-s S]   switch back to the old index (it replays what pods wrote)
    reindex abort    stop the open run before its cutover and delete its new index
    reindex cleanup  --keep N        delete old versioned indices no alias points to
    reindex status   [--json]

Exit codes: 0 done; 1 the operation failed, was aborted or stopped (rerun `run`, `start` or
`cutover` to resume); 2 bad configuration or usage (e.g. an unreadable `--mapping` file);
4 another process is running a reindex of this alias (the run lock is held).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from stream_indexer.cli.options import add_setting_flags, settings_from_args
from stream_indexer.errors import ConfigError, ReindexBusyError, ReindexError
from stream_indexer.masking import mask_text
from stream_indexer.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)
EXIT_BUSY = 4
#: fields a mapping must name: the alias filter, the tombstone scan and the versions use them
REQUIRED_FIELDS = ("id", "version", "deleted")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reindex", help="rebuild the index into a new one while live indexing goes on"
    )
    actions = parser.add_subparsers(dest="reindex_action", required=True, metavar="ACTION")
    for name, text in (
        ("run", "backfill, catch up and cut over, blocking (resumes an open run)"),
        ("start", "backfill and catch up, no cutover (resumes an open run)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--source", choices=("postgres", "topic"), default="postgres")
        action.add_argument("--mapping", metavar="FILE", help="index body JSON for the new index")
        action.add_argument("--max-rate", type=float, metavar="N", help="backfill docs/s limit")
        action.add_argument("--grace-s", type=float, metavar="S", help="catch-up after cutover")
        add_setting_flags(action)
        action.set_defaults(handler=handle)
    for name, text in (
        ("cutover", "catch up the open run and switch both aliases to its index"),
        ("rollback", "switch both aliases back to the old index, replaying what pods wrote"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--grace-s", type=float, metavar="S")
        add_setting_flags(action)
        action.set_defaults(handler=handle)
    action = actions.add_parser("abort", help="stop the open run before cutover, delete its index")
    add_setting_flags(action)
    action.set_defaults(handler=handle)
    action = actions.add_parser("cleanup", help="delete old indices no alias points to")
    action.add_argument("--keep", type=int, required=True, metavar="N")
    add_setting_flags(action)
    action.set_defaults(handler=handle)
    action = actions.add_parser("status", help="phase, rows, docs/s, ETA, catch-up lag")
    action.add_argument("--json", action="store_true")
    add_setting_flags(action)
    action.set_defaults(handler=handle)


def read_mapping(path: str) -> dict[str, Any]:
    """The index body in `path`, checked; ConfigError naming `--mapping` otherwise."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--mapping {path}: cannot read an index body: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("mappings"), dict):
        raise ConfigError(f"--mapping {path}: expected a JSON object with a `mappings` object")
    unknown = set(body) - {"settings", "mappings", "aliases"}
    if unknown:
        raise ConfigError(f"--mapping {path}: unknown keys {sorted(unknown)}")
    if "aliases" in body:
        raise ConfigError(f"--mapping {path}: `aliases` is not allowed (the reindex moves them)")
    properties = body["mappings"].get("properties")
    if not isinstance(properties, dict):
        raise ConfigError(f"--mapping {path}: `mappings.properties` must be an object")
    missing = [name for name in REQUIRED_FIELDS if name not in properties]
    if missing:
        raise ConfigError(f"--mapping {path}: `mappings.properties` lacks {', '.join(missing)}")
    return body


def handle(args: argparse.Namespace) -> int:
    from stream_indexer.observability.logging_setup import configure_logging

    settings = settings_from_args(args)
    mapping = read_mapping(args.mapping) if getattr(args, "mapping", None) else None
    if getattr(args, "max_rate", None) is not None and args.max_rate < 0:
        raise ConfigError("--max-rate must be 0 (no limit) or more")
    configure_logging(settings.log.level, settings.log.format)
    try:
        return asyncio.run(_main(args, settings, mapping))
    except ReindexBusyError as exc:
        print(f"stream-indexer reindex {args.reindex_action}: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except ReindexError as exc:
        print(f"stream-indexer reindex {args.reindex_action}: {exc}", file=sys.stderr)
        return 1


async def _main(args: argparse.Namespace, settings: Settings, mapping: Any) -> int:
    from stream_indexer.app.runner import install_stop_signals, prepare_process
    from stream_indexer.reindex import admin, operation
    from stream_indexer.reindex.rollback import rollback
    from stream_indexer.reindex.session import Session

    action = args.reindex_action
    prepare_process()
    async with Session(settings) as session:
        if action == "status":
            report = await admin.status(session)
            print(json.dumps(report) if args.json else admin.status_text(report))
            return 0
        if action == "cleanup":
            deleted = await admin.cleanup(session, args.keep)
            print(f"deleted {len(deleted)} index(es){': ' if deleted else ''}{', '.join(deleted)}")
            return 0
        if action == "abort":
            aborted = await admin.abort(session)
            print(f"aborted reindex run {aborted.id}; deleted {aborted.new_index}")
            return 0
        install_stop_signals(asyncio.get_running_loop(), session.stop.set)
        work: Callable[[], Awaitable[Any]]
        if action == "rollback":
            work = lambda: rollback(session, args.grace_s)  # noqa: E731
        else:
            options = operation.RunOptions(
                source=getattr(args, "source", "postgres"),
                mapping=mapping,
                max_rate=getattr(args, "max_rate", None),
                grace_s=args.grace_s,
                cutover=action != "start",
                begin=action != "cutover",
            )
            work = lambda: operation.run(session, options)  # noqa: E731
        finished = await _serving_metrics(session, work)
        print(
            f"reindex run {finished.id}: {finished.phase} "
            f"({finished.old_index or '-'} -> {finished.new_index})"
        )
        return 0


async def _serving_metrics(session: Any, work: Callable[[], Awaitable[T]]) -> T:
    """`work()` with /metrics served on METRICS__PORT while it runs (when enabled)."""
    from stream_indexer.observability.http_server import ObservabilityServer

    metrics = session.settings.metrics
    if not metrics.enabled:
        return await work()
    server = ObservabilityServer(metrics.host, metrics.port, session.registry, _AlwaysHealthy())
    await server.start()
    log.info("reindex metrics on port %d", server.port)
    try:
        return await work()
    finally:
        await server.stop()


class _AlwaysHealthy:
    def liveness(self) -> tuple[bool, str]:
        return True, "reindex running"

    def readiness(self) -> tuple[bool, str]:
        return True, "reindex running"


def _masked(exc: BaseException) -> str:
    return mask_text(str(exc))


__all__ = ["EXIT_BUSY", "read_mapping", "register"]
