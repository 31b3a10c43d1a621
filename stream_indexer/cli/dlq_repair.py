"""`stream-indexer dlq retry|replay|purge`: the actions that change dead letters."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from stream_indexer.cli.dlq_args import row_filter
from stream_indexer.cli.dlq_run import (
    connect,
    emit_json,
    run_action,
    with_queries,
)
from stream_indexer.cli.options import settings_from_args
from stream_indexer.dlq.humanize import format_age
from stream_indexer.dlq.query import DlqQueries, RowFilter
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.repair.progress import Progress
from stream_indexer.repair.replay import DlqReplayer, ReplayOptions, ReplayReport
from stream_indexer.repair.replay_records import ReplayFilter
from stream_indexer.repair.retry import DlqRetrier, RetryOptions, RetryReport


def handle_retry(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    options = RetryOptions(
        where=row_filter(args, state="open"),
        limit=args.limit,
        batch_size=args.batch_size,
        dry_run=args.dry_run,
    )

    async def work() -> RetryReport:
        conn = await connect(settings)
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

    code, report = run_action("retry", work)
    if report is None:
        return code
    if args.json:
        emit_json(report.to_json(dry_run=options.dry_run))
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
        f"({report.count('written')} written, {report.count('stale')} stale) and were resolved, "
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

    code, report = run_action("replay", work)
    if report is None:
        return code
    if args.json:
        emit_json(report.to_json(dry_run=options.dry_run))
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
    if report.value_unavailable:
        print(
            f"{report.value_unavailable} degraded records skipped: the DLQ table no longer "
            "holds their original value (see docs/dlq.md, Degraded letters)"
        )
    if report.rows_not_marked:
        print(
            f"{report.rows_not_marked} replayed records could not be marked on their DLQ "
            "table rows (table unreachable); the indexer still resolves them when they land"
        )
    if options.dry_run:
        print("nothing was published and no offset was committed")
    return 0


# -- purge ----------------------------------------------------------------------------------


def handle_purge(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.resolved:  # retention: history resolved before the cut-off goes
        where = RowFilter(
            error_class=args.error_class, state="resolved", resolved_older_than=args.older_than
        )
    else:
        where = RowFilter(
            error_class=args.error_class,
            older_than=args.older_than,
            state="all" if args.hard else "open",
        )
    delete = args.resolved or args.hard
    verb = "deleted" if delete else "closed as purged"

    async def count(q: DlqQueries) -> tuple[datetime, int]:
        now = await q.now()
        return now, await q.count(where, now)

    code, counted = run_action("purge", lambda: with_queries(settings, count))
    if counted is None:
        return code
    now, matching = counted
    if matching == 0:
        print(f"0 rows {verb} (none match)")
        return 0
    if not args.yes and not _confirm(matching, args):
        hint = "" if sys.stdin.isatty() else " (stdin is not a terminal: pass --yes)"
        print(f"stream-indexer dlq purge: aborted; nothing changed{hint}", file=sys.stderr)
        return 1

    async def purge(q: DlqQueries) -> int:
        return await q.purge(where, now, hard=delete)

    code, deleted = run_action("purge", lambda: with_queries(settings, purge))
    if deleted is None:
        return code
    print(f"{deleted} rows {verb}")
    return 0


def _confirm(matching: int, args: argparse.Namespace) -> bool:
    """Ask on stderr, read one line from stdin: only `y` or `yes` confirms."""
    scope = f" with error class {args.error_class}" if args.error_class else ""
    age = format_age(args.older_than)
    if args.resolved:
        question = f"Delete {matching} DLQ rows resolved more than {age} ago{scope}?"
    elif args.hard:
        question = f"Delete {matching} DLQ rows older than {age}{scope}?"
    else:
        question = f"Close {matching} open DLQ rows older than {age}{scope} as purged?"
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


__all__ = ["handle_purge", "handle_replay", "handle_retry"]
