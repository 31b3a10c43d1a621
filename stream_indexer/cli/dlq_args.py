"""`dlq` command plumbing: argument types and the row filter flags the actions share."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from stream_indexer.dlq.humanize import parse_duration, parse_instant
from stream_indexer.dlq.query import RowFilter


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


def row_filter(args: argparse.Namespace, *, state: str | None = None) -> RowFilter:
    """The table filter named by the flags `add_row_filters` (and `add_state`) added."""
    return RowFilter(
        error_class=args.error_class,
        listing_id=args.listing_id,
        older_than=getattr(args, "older_than", None),
        newer_than=getattr(args, "newer_than", None),
        state=str(state or getattr(args, "state", None) or "open"),
    )


def add_state(parser: argparse.ArgumentParser) -> None:
    """`--all` / `--resolved`: open rows unless asked for history."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--all",
        dest="state",
        action="store_const",
        const="all",
        default="open",
        help="open and resolved rows (default: open only)",
    )
    group.add_argument(
        "--resolved",
        dest="state",
        action="store_const",
        const="resolved",
        help="resolved rows only (history)",
    )


def add_row_filters(parser: argparse.ArgumentParser, *, ages: bool) -> None:
    parser.add_argument("--error-class", help="only rows with this error class")
    parser.add_argument("--listing-id", type=positive_int, help="only this listing's rows")
    if ages:
        parser.add_argument(
            "--older-than", type=duration_arg, help="rows created more than DUR ago (30m, 2h, 7d)"
        )
        parser.add_argument(
            "--newer-than", type=duration_arg, help="rows created less than DUR ago"
        )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
