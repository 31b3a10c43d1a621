"""`stream-indexer dlq ...`: the operator's tools for dead letters (list, show, stats, retry,
replay, purge), on the Postgres table and the DLQ topic the indexer writes.

Every action takes the setting flags and reads `STREAM_INDEXER_*`. Results go to stdout
(`--json` where it helps a script); an operational failure (database, broker or cluster
unreachable, row not found, purge not confirmed) prints one line on stderr and exits 1;
bad configuration exits 2 (`cli.main`). This module holds the parsers and the read-only
actions; `dlq_repair` the ones that change rows or topics, `dlq_args` and `dlq_run` what they share.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from stream_indexer.cli.dlq_args import (
    add_json,
    add_row_filters,
    add_state,
    duration_arg,
    instant_arg,
    positive_float,
    positive_int,
    row_filter,
)
from stream_indexer.cli.dlq_repair import handle_purge, handle_replay, handle_retry
from stream_indexer.cli.dlq_run import emit_json, run_action, short, with_queries
from stream_indexer.cli.options import add_setting_flags, settings_from_args
from stream_indexer.dlq.humanize import format_age, show_bytes
from stream_indexer.dlq.query import DlqQueries, DlqRow
from stream_indexer.errors import OperationFailed
from stream_indexer.repair.replay import DEFAULT_MAX_REPLAYS

# -- parsers ----------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dlq",
        help="inspect, retry, replay and purge dead letters",
        description="Inspect, retry, replay and purge dead letters (Postgres table, DLQ topic).",
    )
    actions = parser.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")

    listing = _action(actions, "list", "list open DLQ table rows, oldest first", handle_list)
    add_row_filters(listing, ages=True)
    add_state(listing)
    listing.add_argument("--limit", type=positive_int, help="show at most N rows")
    add_json(listing)

    show = _action(actions, "show", "show one DLQ table row with its source record", handle_show)
    show.add_argument("id", type=positive_int, help="the row's id (from `dlq list`)")
    add_json(show)

    stats = _action(
        actions, "stats", "open DLQ rows by error class and age, oldest entry", handle_stats
    )
    add_state(stats)
    add_json(stats)

    retry = _action(
        actions, "retry", "re-process DLQ table rows straight to OpenSearch", handle_retry
    )
    add_row_filters(retry, ages=True)
    retry.add_argument("--limit", type=positive_int, help="retry at most N rows")
    retry.add_argument(
        "--batch-size", type=positive_int, default=500, help="rows per bulk request (500)"
    )
    retry.add_argument(
        "--dry-run", action="store_true", help="show what would happen, change nothing"
    )
    add_json(retry)

    replay = _action(
        actions,
        "replay",
        "re-publish DLQ topic records to their source topic",
        handle_replay,
        conflict_handler="resolve",
    )
    replay.add_argument("--to-topic", help="publish here instead of x-dlq-original-topic")
    replay.add_argument("--error-class", help="only records with this x-dlq-error-class")
    replay.add_argument(
        "--since", type=instant_arg, help="only records dead-lettered at or after (time or 2h)"
    )
    replay.add_argument(
        "--until", type=instant_arg, help="only records dead-lettered before (time or 2h)"
    )
    replay.add_argument("--listing-id", type=positive_int, help="only this listing's records")
    replay.add_argument("--limit", type=positive_int, help="replay at most N records")
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be replayed; publish and commit nothing",
    )
    replay.add_argument("--rate", type=positive_float, help="at most R records per second")
    replay.add_argument(
        "--max-replays",
        type=positive_int,
        default=DEFAULT_MAX_REPLAYS,
        help=f"refuse records replayed this often already ({DEFAULT_MAX_REPLAYS})",
    )
    # Replaces the settings flag of the same name: here it names the replay tool's group.
    replay.add_argument(
        "--group-id",
        dest="replay_group_id",
        help="the replay's consumer group (default <kafka.group_id>-dlq-replay)",
    )
    add_json(replay)

    purge = _action(
        actions, "purge", "close old open DLQ rows as purged, or delete history", handle_purge
    )
    purge.add_argument(
        "--older-than",
        type=duration_arg,
        required=True,
        help="rows created before this age ago (with --resolved: resolved before it)",
    )
    purge.add_argument("--error-class", help="only rows with this error class")
    purge.add_argument(
        "--resolved",
        action="store_true",
        help="delete resolved rows (retention of history) instead of closing open ones",
    )
    purge.add_argument(
        "--hard",
        action="store_true",
        help="delete matching rows, open or resolved, instead of keeping audit rows",
    )
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _action(
    actions: Any,
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
    **kwargs: Any,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=help_text, description=help_text, **kwargs
    )
    add_setting_flags(parser)
    parser.set_defaults(handler=handler)
    return parser


# -- list / show / stats ------------------------------------------------------------------


def handle_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    where = row_filter(args)

    async def work(q: DlqQueries) -> tuple[datetime, list[DlqRow]]:
        now = await q.now()
        return now, await q.list_rows(where, now, limit=args.limit)

    code, result = run_action("list", lambda: with_queries(settings, work))
    if result is None:
        return code
    now, rows = result
    if args.json:
        emit_json([row.summary(now) for row in rows])
        return 0
    if not rows:
        print("no open DLQ rows match" if args.state == "open" else "no DLQ rows match")
        return 0
    headings = "ID LISTING VERSION ACTION ERROR_CLASS ATTEMPTS AGE STATE LAST_ERROR"
    table = [tuple(headings.split())]
    for row in rows:
        table.append(
            (
                str(row.id),
                "-" if row.listing_id is None else str(row.listing_id),
                "-" if row.version is None else str(row.version),
                row.action,
                row.error_class,
                str(row.attempts),
                format_age(now - row.created_at),
                row.state,
                short(row.last_error),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False))
            + "  "
            + line[-1]
        )
    return 0


def handle_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    async def work(q: DlqQueries) -> tuple[datetime, DlqRow]:
        row = await q.get(args.id)
        if row is None:
            raise OperationFailed(f"no DLQ row with id {args.id} in table {q.table}")
        return await q.now(), row

    code, result = run_action("show", lambda: with_queries(settings, work))
    if result is None:
        return code
    now, row = result
    if args.json:
        emit_json(row.detail(now))
        return 0
    source = f"{row.topic}[{row.partition}]@{row.offset}" if row.topic else "-"
    fields = [
        ("id", str(row.id)),
        ("listing_id", "-" if row.listing_id is None else str(row.listing_id)),
        ("action", row.action),
        ("error_class", row.error_class),
        ("attempts", str(row.attempts)),
        ("version", "-" if row.version is None else str(row.version)),
        ("state", row.state),
        ("resolved_at", "-" if row.resolved_at is None else row.resolved_at.isoformat()),
        (
            "replayed",
            f"{row.replay_count} times, last {row.replayed_at.isoformat()}"
            if row.replayed_at is not None
            else f"{row.replay_count} times",
        ),
        ("created_at", f"{row.created_at.isoformat()} ({format_age(now - row.created_at)} ago)"),
        ("last_attempt_at", row.last_attempt_at.isoformat()),
        ("source", source),
        ("consumer_group", row.consumer_group or "-"),
        ("last_error", row.last_error),
        ("key", _shown(row.key)),
        ("value", _shown(row.value)),
    ]
    for name, value in fields:
        print(f"{name + ':':<17}{value}")
    print("headers:" + ("" if row.headers else " -"))
    for header_name, header_value in row.headers or ():
        print(f"  {header_name}: {_shown(header_value)}")
    if row.data is not None:
        print("data:             " + json.dumps(row.data, ensure_ascii=False, sort_keys=True))
    return 0


def _shown(raw: bytes | None) -> str:
    shown = show_bytes(raw)
    if shown is None:
        return "(null)"
    return f"({shown['encoding']}) {shown['data']}"


def handle_stats(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    async def work(q: DlqQueries) -> Any:
        return await q.stats(await q.now(), args.state)

    code, stats = run_action("stats", lambda: with_queries(settings, work))
    if stats is None:
        return code
    if args.json:
        emit_json(stats.to_json())
        return 0
    print(f"{stats.state} rows: {stats.total}")
    by_state = stats.by_state or {}
    print("table: " + (", ".join(f"{n} {name}" for name, n in by_state.items()) or "empty"))
    print("by error class:")
    for name, count in stats.by_error_class.items():
        print(f"  {name:<24}{count}")
    print("by age:")
    for label, count in stats.by_age.items():
        print(f"  {label:<24}{count}")
    age = stats.oldest_age
    if stats.oldest_created_at is None or age is None:
        print("oldest: -")
    else:
        print(f"oldest: {stats.oldest_created_at.isoformat()} ({format_age(age)} ago)")
    return 0


__all__ = ["register"]
