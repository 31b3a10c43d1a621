"""`stream-indexer dlq ...`: the operator's tools for dead letters (list, show, stats, retry,
replay, purge), on the Postgres table and the DLQ topic the indexer writes.

Every action takes the setting flags and reads `STREAM_INDEXER_*`. Results go to stdout
(`--json` where it helps a script); an operational failure (database, broker or cluster
unreachable, row not found, purge not confirmed) prints one line on stderr and exits 1;
bad configuration exits 2 (`cli.main`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from aiokafka.errors import KafkaError

from stream_indexer.cli.options import add_setting_flags, settings_from_args
from stream_indexer.dlq.progress import Progress
from stream_indexer.dlq.query import (
    DlqQueries,
    DlqRow,
    RowFilter,
    format_age,
    parse_duration,
    parse_instant,
    show_bytes,
)
from stream_indexer.dlq.replay import (
    DEFAULT_MAX_REPLAYS,
    DlqReplayer,
    ReplayError,
    ReplayFilter,
    ReplayOptions,
    ReplayReport,
)
from stream_indexer.dlq.retry import DlqRetrier, RetryOptions, RetryReport
from stream_indexer.errors import TransientError
from stream_indexer.settings import Settings
from stream_indexer.sink import OpenSearchSink

T = TypeVar("T")


class OperationFailed(Exception):
    """A command could not do what was asked (row not found, purge not confirmed)."""


#: what makes a command exit 1 with one line (ConfigError is left to `cli.main`: exit 2)
FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    KafkaError,
    TransientError,
    ReplayError,
    OSError,
    TimeoutError,
    ValueError,  # a malformed DSN
    OperationFailed,
)
LAST_ERROR_CHARS = 80


# -- argument types -------------------------------------------------------------------


def duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def instant_arg(text: str) -> datetime:
    try:
        return parse_instant(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text}")
    return value


def row_filter(args: argparse.Namespace) -> RowFilter:
    """The table filter named by the flags `add_row_filters` added."""
    return RowFilter(
        error_class=args.error_class,
        listing_id=args.listing_id,
        older_than=getattr(args, "older_than", None),
        newer_than=getattr(args, "newer_than", None),
    )


# -- parsers ----------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dlq",
        help="inspect, retry, replay and purge dead letters",
        description="Inspect, retry, replay and purge dead letters (Postgres table, DLQ topic).",
    )
    actions = parser.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")

    listing = _action(actions, "list", "list DLQ table rows, oldest first", handle_list)
    _add_row_filters(listing, ages=True)
    listing.add_argument("--limit", type=positive_int, help="show at most N rows")
    _add_json(listing)

    show = _action(actions, "show", "show one DLQ table row with its source record", handle_show)
    show.add_argument("id", type=positive_int, help="the row's id (from `dlq list`)")
    _add_json(show)

    stats = _action(
        actions, "stats", "DLQ table counts by error class and age, oldest entry", handle_stats
    )
    _add_json(stats)

    retry = _action(
        actions, "retry", "re-process DLQ table rows straight to OpenSearch", handle_retry
    )
    _add_row_filters(retry, ages=True)
    retry.add_argument("--limit", type=positive_int, help="retry at most N rows")
    retry.add_argument(
        "--batch-size", type=positive_int, default=500, help="rows per bulk request (500)"
    )
    retry.add_argument(
        "--dry-run", action="store_true", help="show what would happen, change nothing"
    )
    _add_json(retry)

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
    _add_json(replay)

    purge = _action(actions, "purge", "delete old DLQ table rows", handle_purge)
    purge.add_argument(
        "--older-than", type=duration_arg, required=True, help="rows created before this age ago"
    )
    purge.add_argument("--error-class", help="only rows with this error class")
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


def _add_row_filters(parser: argparse.ArgumentParser, *, ages: bool) -> None:
    parser.add_argument("--error-class", help="only rows with this error class")
    parser.add_argument("--listing-id", type=positive_int, help="only this listing's rows")
    if ages:
        parser.add_argument(
            "--older-than", type=duration_arg, help="rows created more than DUR ago (30m, 2h, 7d)"
        )
        parser.add_argument(
            "--newer-than", type=duration_arg, help="rows created less than DUR ago"
        )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


# -- running ------------------------------------------------------------------------------


def _one_line(action: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, asyncpg.UndefinedTableError):
        text += " (run `stream-indexer migrate up` first)"
    elif not isinstance(exc, OperationFailed | ReplayError | TransientError):
        text = f"{type(exc).__name__}: {text}"
    return f"stream-indexer dlq {action}: {text}"


def _run(action: str, work: Callable[[], Awaitable[T]]) -> tuple[int, T | None]:
    async def main() -> T:
        return await work()

    try:
        return 0, asyncio.run(main())
    except FAILURES as exc:
        print(_one_line(action, exc), file=sys.stderr)
        return 1, None


async def _connect(settings: Settings) -> asyncpg.Connection:
    timeout = settings.postgres.command_timeout_s
    conn: asyncpg.Connection = await asyncpg.connect(
        settings.postgres.dsn.get_secret_value(), timeout=timeout, command_timeout=timeout
    )
    return conn


async def _with_queries(settings: Settings, work: Callable[[DlqQueries], Awaitable[T]]) -> T:
    queries_table = settings.dlq.table
    conn = await _connect(settings)
    try:
        return await work(DlqQueries(conn, queries_table))
    finally:
        await conn.close()


def _emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _short(text: str, limit: int = LAST_ERROR_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- list / show / stats ------------------------------------------------------------------


def handle_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    where = row_filter(args)

    async def work(q: DlqQueries) -> tuple[datetime, list[DlqRow]]:
        now = await q.now()
        return now, await q.list_rows(where, now, limit=args.limit)

    code, result = _run("list", lambda: _with_queries(settings, work))
    if result is None:
        return code
    now, rows = result
    if args.json:
        _emit_json([row.summary(now) for row in rows])
        return 0
    if not rows:
        print("no DLQ rows match")
        return 0
    table = [("ID", "LISTING", "ACTION", "ERROR_CLASS", "ATTEMPTS", "AGE", "LAST_ERROR")]
    for row in rows:
        table.append(
            (
                str(row.id),
                "-" if row.listing_id is None else str(row.listing_id),
                row.action,
                row.error_class,
                str(row.attempts),
                format_age(now - row.created_at),
                _short(row.last_error),
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

    code, result = _run("show", lambda: _with_queries(settings, work))
    if result is None:
        return code
    now, row = result
    if args.json:
        _emit_json(row.detail(now))
        return 0
    source = f"{row.topic}[{row.partition}]@{row.offset}" if row.topic else "-"
    fields = [
        ("id", str(row.id)),
        ("listing_id", "-" if row.listing_id is None else str(row.listing_id)),
        ("action", row.action),
        ("error_class", row.error_class),
        ("attempts", str(row.attempts)),
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
        return await q.stats(await q.now())

    code, stats = _run("stats", lambda: _with_queries(settings, work))
    if stats is None:
        return code
    if args.json:
        _emit_json(stats.to_json())
        return 0
    print(f"total: {stats.total}")
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


# -- retry ----------------------------------------------------------------------------------


def handle_retry(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    options = RetryOptions(
        where=row_filter(args), limit=args.limit, batch_size=args.batch_size, dry_run=args.dry_run
    )

    async def work() -> RetryReport:
        conn = await _connect(settings)
        sink = OpenSearchSink(settings)
        try:
            queries = DlqQueries(conn, settings.dlq.table)
            total = await queries.count(options.where, await queries.now())
            progress = Progress(min(total, options.limit or total), "retry")
            if not options.dry_run:
                await sink.start()
            retrier = DlqRetrier(settings, queries, sink, on_progress=progress.update)
            try:
                return await retrier.run(options)
            finally:
                progress.close()
        finally:
            await sink.stop()
            await conn.close()

    code, report = _run("retry", work)
    if report is None:
        return code
    if args.json:
        _emit_json(report.to_json(dry_run=options.dry_run))
        return 0
    if options.dry_run:
        for o in report.outcomes:
            verdict = "would write" if o.result == "would_write" else "would fail again"
            print(f"id {o.row_id} (listing {o.listing_id or '-'}): {verdict}: {o.detail}")
        print(
            f"dry run: {report.retried} rows selected: {report.count('would_write')} would be "
            f"sent to OpenSearch, {report.count('would_fail')} would fail again; nothing changed"
        )
        return 0
    for o in report.outcomes:
        if o.result == "failed":
            print(f"id {o.row_id} (listing {o.listing_id or '-'}): failed again: {o.detail}")
    print(
        f"retried {report.retried}: {report.succeeded} succeeded "
        f"({report.count('written')} written, {report.count('stale')} stale) and were removed, "
        f"{report.failed_again} failed again"
    )
    if report.changed_meanwhile:
        print(
            f"{report.changed_meanwhile} rows were updated by the indexer meanwhile "
            "and were left as it wrote them"
        )
    return 0


# -- replay ---------------------------------------------------------------------------------


def handle_replay(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    options = ReplayOptions(
        where=ReplayFilter(
            error_class=args.error_class,
            since=args.since,
            until=args.until,
            listing_id=args.listing_id,
        ),
        to_topic=args.to_topic,
        limit=args.limit,
        dry_run=args.dry_run,
        rate=args.rate,
        max_replays=args.max_replays,
        group_id=args.replay_group_id,
    )
    progress: list[Progress] = []

    def on_start(total: int) -> None:
        progress.append(Progress(total, "replay"))

    def on_progress(n: int) -> None:
        progress[0].update(n)

    async def work() -> ReplayReport:
        replayer = DlqReplayer(settings, on_start=on_start, on_progress=on_progress)
        try:
            return await replayer.run(options)
        finally:
            for bar in progress:
                bar.close()

    code, report = _run("replay", work)
    if report is None:
        return code
    if args.json:
        _emit_json(report.to_json(dry_run=options.dry_run))
        return 0
    for line in report.planned:
        print(line)
    targets = ", ".join(f"to {t}: {n}" for t, n in sorted(report.by_topic.items())) or "none"
    verb = "dry run: would replay" if options.dry_run else "replayed"
    print(f"{verb} {report.replayed} of {report.examined} records examined ({targets})")
    print(
        f"skipped {report.skipped_limit} at the replay limit "
        f"(x-replay-count >= {options.max_replays})"
    )
    if report.filtered_out:
        note = (
            ""
            if options.dry_run
            else f"; group {report.group_id} has passed them (use another --group-id to see them)"
        )
        print(f"{report.filtered_out} did not match the filters{note}")
    if report.no_target:
        print(f"{report.no_target} had no x-dlq-original-topic header (use --to-topic)")
    if options.dry_run:
        print("nothing was published and no offset was committed")
    return 0


# -- purge ----------------------------------------------------------------------------------


def handle_purge(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    where = RowFilter(error_class=args.error_class, older_than=args.older_than)

    async def count(q: DlqQueries) -> tuple[datetime, int]:
        now = await q.now()
        return now, await q.count(where, now)

    code, counted = _run("purge", lambda: _with_queries(settings, count))
    if counted is None:
        return code
    now, matching = counted
    if matching == 0:
        print("0 rows deleted (none match)")
        return 0
    if not args.yes and not _confirm(matching, args):
        hint = "" if sys.stdin.isatty() else " (stdin is not a terminal: pass --yes)"
        print(f"stream-indexer dlq purge: aborted; nothing deleted{hint}", file=sys.stderr)
        return 1

    async def purge(q: DlqQueries) -> int:
        return await q.purge(where, now)

    code, deleted = _run("purge", lambda: _with_queries(settings, purge))
    if deleted is None:
        return code
    print(f"{deleted} rows deleted")
    return 0


def _confirm(matching: int, args: argparse.Namespace) -> bool:
    """Ask on stderr, read one line from stdin: only `y` or `yes` confirms."""
    scope = f" with error class {args.error_class}" if args.error_class else ""
    sys.stderr.write(
        f"Delete {matching} DLQ rows older than {format_age(args.older_than)}{scope}? [y/N] "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


__all__ = ["register"]
