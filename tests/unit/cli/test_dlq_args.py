"""Pure logic of the `dlq` tools: arguments, durations, filters, header rewriting, writes."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson
import pytest

from stream_indexer.cli import build_parser
from stream_indexer.cli.dlq_args import row_filter
from stream_indexer.cli.options import settings_from_args
from stream_indexer.dlq.humanize import format_age, parse_duration, parse_instant, show_bytes
from stream_indexer.dlq.query import RowFilter
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.opensearch.bulk import build_body
from stream_indexer.pipeline.documents import pending_write
from stream_indexer.repair.progress import Progress, render
from stream_indexer.repair.replay import default_group_id
from stream_indexer.repair.replay_records import (
    ReplayFilter,
    failed_at,
    replay_count,
    replay_headers,
)
from stream_indexer.repair.retry import RetryReport, RowOutcome

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(days=7)),
        ("1h30m", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
        ("0s", timedelta(0)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-2h", "2h 30m", "1.5h", "2hh"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_instants_are_timestamps_or_durations_ago() -> None:
    assert parse_instant("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_instant("2024-04-30T10:00:00Z", NOW) == datetime(2024, 4, 30, 10, tzinfo=UTC)
    assert parse_instant("2024-04-30T10:00:00", NOW) == datetime(2024, 4, 30, 10, tzinfo=UTC)
    offset = parse_instant("2024-04-30T12:00:00+02:00", NOW)
    assert offset == datetime(2024, 4, 30, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a timestamp"):
        parse_instant("yesterday", NOW)


def test_row_filter_sql_uses_numbered_parameters_and_absolute_cutoffs() -> None:
    assert RowFilter().where(NOW) == ("TRUE", [])
    where = RowFilter(
        error_class="undecodable",
        listing_id=42,
        older_than=timedelta(days=7),
        newer_than=timedelta(days=30),
    )
    sql, params = where.where(NOW, first_param=3)
    assert sql == ("error_class = $3 AND listing_id = $4 AND created_at < $5 AND created_at >= $6")
    assert params == ["undecodable", 42, NOW - timedelta(days=7), NOW - timedelta(days=30)]


def test_bytes_are_shown_as_utf8_when_they_decode_else_base64() -> None:
    assert show_bytes(None) is None
    assert show_bytes(b"42") == {"encoding": "utf-8", "data": "42"}
    assert show_bytes("é".encode()) == {"encoding": "utf-8", "data": "é"}
    assert show_bytes(b"\xff\x00") == {"encoding": "base64", "data": "/wA="}


def test_ages_are_short() -> None:
    assert format_age(timedelta(seconds=45)) == "45s"
    assert format_age(timedelta(minutes=12, seconds=5)) == "12m"
    assert format_age(timedelta(hours=5, minutes=59)) == "5h"
    assert format_age(timedelta(days=3, hours=1)) == "3d"
    assert format_age(timedelta(seconds=-5)) == "0s"


def test_list_flags_become_a_row_filter() -> None:
    args = build_parser().parse_args(
        ["dlq", "list", "--error-class", "undecodable", "--listing-id", "7", "--older-than", "2h"]
    )
    assert row_filter(args) == RowFilter(
        error_class="undecodable", listing_id=7, older_than=timedelta(hours=2), state="open"
    )
    assert args.limit is None and args.json is False


@pytest.mark.parametrize(
    ("flags", "state"), [([], "open"), (["--all"], "all"), (["--resolved"], "resolved")]
)
def test_list_and_stats_show_open_rows_unless_asked_for_history(
    flags: list[str], state: str
) -> None:
    for action in ("list", "stats"):
        args = build_parser().parse_args(["dlq", action, *flags])
        assert args.state == state
    assert row_filter(build_parser().parse_args(["dlq", "list", *flags])).state == state


def test_all_and_resolved_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dlq", "list", "--all", "--resolved"])


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "list", "--older-than", "soon"],
        ["dlq", "list", "--limit", "0"],
        ["dlq", "show", "abc"],
        ["dlq", "retry", "--batch-size", "0"],
        ["dlq", "replay", "--rate", "0"],
        ["dlq", "replay", "--rate", "inf"],
        ["dlq", "replay", "--since", "whenever"],
        ["dlq", "replay", "--max-replays", "-1"],
        ["dlq", "purge"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_replay_group_id_names_the_replay_group_not_the_indexer_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAM_INDEXER_KAFKA__GROUP_ID", "indexer")
    args = build_parser().parse_args(["dlq", "replay", "--group-id", "mine", "--limit", "5"])
    assert args.replay_group_id == "mine" and args.limit == 5 and args.max_replays == 3
    settings = settings_from_args(args)
    assert settings.kafka.group_id == "indexer"
    assert default_group_id(settings) == "indexer-dlq-replay"
    # Elsewhere --group-id still overrides the setting.
    other = build_parser().parse_args(["dlq", "stats", "--group-id", "g2"])
    assert settings_from_args(other).kafka.group_id == "g2"


def test_replay_count_reads_the_last_header_and_tolerates_junk() -> None:
    assert replay_count([]) == 0
    assert replay_count([("x-replay-count", b"2")]) == 2
    assert replay_count([("x-replay-count", b"1"), ("X-Replay-Count", b"3")]) == 3
    assert replay_count([("x-replay-count", b"many")]) == 0
    assert replay_count([("x-replay-count", b"-4")]) == 0


def test_replay_headers_drop_dlq_headers_and_the_old_count() -> None:
    headers = [
        ("trace", b"abc"),
        ("x-replay-count", b"1"),
        ("x-dlq-error-class", b"undecodable"),
        ("X-DLQ-Original-Topic", b"t"),
        ("trace", b"again"),
    ]
    assert replay_headers(headers, 2) == [
        ("trace", b"abc"),
        ("trace", b"again"),
        ("x-replay-count", b"2"),
    ]


def test_failed_at_prefers_the_header_then_the_record_timestamp() -> None:
    header = [("x-dlq-failed-at", b"2024-05-01T12:00:00.123Z")]
    assert failed_at(header, 0) == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    stamp = int(NOW.timestamp() * 1000)
    assert failed_at([("x-dlq-failed-at", b"garbage")], stamp) == NOW
    assert failed_at([], stamp) == NOW
    assert failed_at([], None) is None
    assert failed_at([], -1) is None


def test_replay_filter() -> None:
    headers = [("x-dlq-error-class", b"undecodable"), ("x-dlq-failed-at", b"2024-05-01T12:00:00Z")]
    assert ReplayFilter().matches(None, None, [], None)
    assert ReplayFilter(error_class="undecodable").matches(b"1", b"x", headers, None)
    assert not ReplayFilter(error_class="schema_invalid").matches(b"1", b"x", headers, None)
    assert ReplayFilter(since=NOW).matches(None, None, headers, None)
    assert not ReplayFilter(since=NOW + timedelta(seconds=1)).matches(None, None, headers, None)
    assert ReplayFilter(until=NOW + timedelta(seconds=1)).matches(None, None, headers, None)
    assert not ReplayFilter(until=NOW).matches(None, None, headers, None)
    assert not ReplayFilter(since=NOW).matches(None, None, [], None), "no time: no match"
    assert ReplayFilter(listing_id=42).matches(b"42", None, [], None)
    assert ReplayFilter(listing_id=42).matches(None, b'{"listing_id": 42}', [], None)
    assert not ReplayFilter(listing_id=42).matches(b"43", None, [], None)


def _event(action: Literal["index", "delete"], data: Listing | None) -> ListingEvent:
    return ListingEvent(
        event_id=uuid.UUID(int=1),
        action=action,
        listing_id=9,
        version=4,
        occurred_at=NOW,
        data=data,
    )


def test_event_write_builds_the_workers_document_or_tombstone() -> None:
    listing = Listing(id=9, title="Bike", price=10, status="active", updated_at=NOW)
    write = pending_write(_event("index", listing), listing, "t", "row")
    assert (write.listing_id, write.version, write.context) == (9, 4, "row")
    assert write.document["title"] == "Bike"
    assert write.document["version"] == 4 and write.document["indexed_at"] == "t"
    body = orjson.loads(build_body([write]).split(b"\n")[1])
    assert body["event_id"] == str(uuid.UUID(int=1))  # as sent
    assert "deleted" not in write.document

    for event, known in ((_event("delete", None), None), (_event("index", None), None)):
        tombstone = pending_write(event, known, "t").document
        assert tombstone["deleted"] is True and tombstone["version"] == 4 and tombstone["id"] == 9


def test_retry_report_counts() -> None:
    report = RetryReport(
        [
            RowOutcome(1, 1, "written", ""),
            RowOutcome(2, 2, "stale", ""),
            RowOutcome(3, None, "failed", "undecodable: x"),
        ]
    )
    data = report.to_json(dry_run=False)
    assert (data["retried"], data["succeeded"], data["failed_again"]) == (3, 2, 1)
    assert data["rows"][2] == {
        "id": 3,
        "listing_id": None,
        "result": "failed",
        "detail": "undecodable: x",
    }


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal() -> None:
    assert render(5, 10, "replay") == f"replay [{'#' * 15}{'.' * 15}] 5/10"
    assert render(20, 10, "x").endswith("] 20/10")
    piped = io.StringIO()
    bar = Progress(10, "replay", piped)
    bar.update(10)
    bar.close()
    assert piped.getvalue() == "" and bar.done == 10
    tty = _Tty()
    bar = Progress(2, "retry", tty)
    bar.update(2)
    bar.close()
    assert tty.getvalue().endswith("] 2/2\n")
