"""`stream-indexer dlq list|show|stats|retry|purge` on the real table and OpenSearch, run
through `cli.main` with settings from the environment (the way an operator runs them)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from opensearchpy import AsyncOpenSearch
from support.pipeline import dlq_rows, read_alias, settings_env
from support.stack_fixtures import SettingsFactory

from stream_indexer.app.migrate import migrate_up
from stream_indexer.cli import main
from stream_indexer.dlq import DeadLetter, PostgresDeadLetterTable
from stream_indexer.opensearch.bulk import PendingWrite, build_body
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.settings import Settings

NOW = datetime.now(UTC)


def event(listing_id: int, version: int, *, action: str = "index") -> bytes:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "action": action,
        "listing_id": listing_id,
        "version": version,
        "occurred_at": NOW.isoformat(),
    }
    if action == "index":
        body["data"] = {
            "id": listing_id,
            "title": f"Listing {listing_id}",
            "price": 12.5,
            "status": "active",
            "updated_at": NOW.isoformat(),
        }
    return orjson.dumps(body)


def letter(
    offset: int,
    *,
    key: bytes | None,
    value: bytes | None,
    listing_id: int | None,
    error_class: str,
    age: timedelta,
    action: str | None = "index",
    headers: tuple[tuple[str, bytes], ...] = (),
) -> DeadLetter:
    return DeadLetter(
        topic="listings.changes",
        partition=0,
        offset=offset,
        timestamp_ms=None,
        key=key,
        value=value,
        headers=headers,
        listing_id=listing_id,
        action=action,
        data=None,
        error_class=error_class,
        error_message=f"{error_class} at offset {offset}",
        attempts=1,
        consumer_group="stream-indexer",
        failed_at=datetime.now(UTC) - age,
    )


@pytest.fixture
async def settings(
    pg_dsn: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    settings_for: SettingsFactory,
) -> AsyncIterator[Settings]:
    """Migrated database, this test's index names, and STREAM_INDEXER_* set to match."""
    await migrate_up(pg_dsn)
    settings = settings_for(
        f"{unique_name}-src", **{"retry.initial_backoff_ms": 10, "retry.max_attempts": 2}
    )
    use_env(monkeypatch, settings)
    yield settings


def use_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for name in list(os.environ):
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.delenv(name)
    for name, value in settings_env(settings).items():
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.setenv(name, value)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `stream-indexer <argv>` (in a thread: the CLI runs its own event loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = await cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


async def seed(settings: Settings, letters: list[DeadLetter]) -> None:
    pool = await asyncpg.create_pool(
        settings.postgres.dsn.get_secret_value(), min_size=1, max_size=1
    )
    try:
        table = PostgresDeadLetterTable(pool)
        for one in letters:  # one by one: ids follow the list order
            await table.write([one])
    finally:
        await pool.close()


def ids_by_listing(rows: list[dict[str, Any]]) -> dict[int | None, int]:
    return {row["listing_id"]: row["id"] for row in rows}


async def test_list_show_and_stats_filter_and_show_bytes_safely(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(
        settings,
        [
            letter(
                1,
                key=b"1",
                value=b"\xff\xfe not utf-8",
                listing_id=1,
                error_class="undecodable",
                age=timedelta(hours=2),
                action=None,
                headers=(("trace", b"abc"), ("bin", b"\xff\x00")),
            ),
            letter(
                2,
                key=b"2",
                value=event(2, 1),
                listing_id=2,
                error_class="mapping_rejected",
                age=timedelta(days=3),
            ),
            letter(
                3,
                key=None,
                value=b"{oops",
                listing_id=None,
                error_class="undecodable",
                age=timedelta(days=10),
                action=None,
            ),
            letter(
                4,
                key=b"3",
                value=event(3, 1),
                listing_id=3,
                error_class="schema_invalid",
                age=timedelta(minutes=10),
            ),
        ],
    )

    everything = await cli_json(capsys, "dlq", "list")
    assert [row["listing_id"] for row in everything] == [1, 2, None, 3]
    ids = ids_by_listing(everything)
    assert everything[1]["error_class"] == "mapping_rejected"
    assert everything[1]["attempts"] == 1
    assert everything[1]["offset"] == 2
    assert everything[1]["age_seconds"] >= 3 * 86400 - 60

    def listings(rows: list[dict[str, Any]]) -> list[int | None]:
        return [row["listing_id"] for row in rows]

    assert listings(await cli_json(capsys, "dlq", "list", "--error-class", "undecodable")) == [
        1,
        None,
    ]
    assert listings(await cli_json(capsys, "dlq", "list", "--older-than", "1d")) == [2, None]
    assert listings(await cli_json(capsys, "dlq", "list", "--newer-than", "1h")) == [3]
    assert listings(
        await cli_json(capsys, "dlq", "list", "--older-than", "1h", "--newer-than", "7d")
    ) == [1, 2]
    assert listings(await cli_json(capsys, "dlq", "list", "--listing-id", "2")) == [2]
    assert listings(await cli_json(capsys, "dlq", "list", "--limit", "1")) == [1]

    code, text, _ = await cli(capsys, "dlq", "list")
    assert code == 0
    assert text.splitlines()[0].split()[:5] == ["ID", "LISTING", "VERSION", "ACTION", "ERROR_CLASS"]
    assert len(text.splitlines()) == 5

    shown = await cli_json(capsys, "dlq", "show", str(ids[1]))
    assert shown["key"] == {"encoding": "utf-8", "data": "1"}
    assert shown["value"] == {
        "encoding": "base64",
        "data": base64.b64encode(b"\xff\xfe not utf-8").decode(),
    }
    assert shown["headers"] == [
        ["trace", {"encoding": "utf-8", "data": "abc"}],
        ["bin", {"encoding": "base64", "data": base64.b64encode(b"\xff\x00").decode()}],
    ]
    assert shown["last_error"] == "undecodable at offset 1"
    valid = await cli_json(capsys, "dlq", "show", str(ids[2]))
    assert json.loads(valid["value"]["data"])["listing_id"] == 2
    code, text, _ = await cli(capsys, "dlq", "show", str(ids[None]))
    assert code == 0
    assert "key:             (null)" in text
    assert "value:           (utf-8) {oops" in text

    code, out, err = await cli(capsys, "dlq", "show", str(max(ids.values()) + 100))
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and "no DLQ row with id" in err

    stats = await cli_json(capsys, "dlq", "stats")
    assert stats["total"] == 4
    assert stats["by_error_class"] == {"undecodable": 2, "mapping_rejected": 1, "schema_invalid": 1}
    assert stats["by_age"] == {"<1h": 1, "<24h": 1, "<7d": 1, "older": 1}
    assert stats["oldest"]["age_seconds"] >= 10 * 86400 - 60
    code, text, _ = await cli(capsys, "dlq", "stats")
    assert code == 0 and "open rows: 4" in text and "oldest: " in text


async def test_purge_asks_unless_yes_and_closes_only_matching_old_rows(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = timedelta(days=2)
    await seed(
        settings,
        [
            letter(1, key=b"1", value=b"x", listing_id=1, error_class="undecodable", age=old),
            letter(2, key=b"2", value=b"x", listing_id=2, error_class="schema_invalid", age=old),
            letter(
                3, key=b"3", value=b"x", listing_id=3, error_class="undecodable", age=timedelta(0)
            ),
        ],
    )
    dsn = settings.postgres.dsn.get_secret_value()

    def states() -> Any:
        async def read() -> dict[int, str | None]:
            return {row["listing_id"]: row["resolution"] for row in await dlq_rows(dsn)}

        return read()

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, out, err = await cli(capsys, "dlq", "purge", "--older-than", "1d")
    assert code == 1
    assert "Close 2 open DLQ rows older than 1d as purged?" in err and "aborted" in err
    assert await states() == {1: None, 2: None, 3: None}

    code, out, _ = await cli(
        capsys, "dlq", "purge", "--older-than", "1d", "--error-class", "undecodable", "--yes"
    )
    assert code == 0 and out.strip() == "1 rows closed as purged"
    assert await states() == {1: "purged", 2: None, 3: None}  # the audit row stays

    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    code, out, _ = await cli(capsys, "dlq", "purge", "--older-than", "1d")
    assert code == 0 and out.strip() == "1 rows closed as purged"
    assert await states() == {1: "purged", 2: "purged", 3: None}
    assert [row["listing_id"] for row in await cli_json(capsys, "dlq", "list")] == [3]
    history = await cli_json(capsys, "dlq", "list", "--resolved")
    assert [(row["listing_id"], row["state"]) for row in history] == [
        (1, "purged"),
        (2, "purged"),
    ]
    assert len(await cli_json(capsys, "dlq", "list", "--all")) == 3
    stats = await cli_json(capsys, "dlq", "stats")
    assert stats["total"] == 1 and stats["by_state"] == {"open": 1, "purged": 2}

    # Retention: history resolved long enough ago goes; just-resolved history stays.
    code, out, _ = await cli(capsys, "dlq", "purge", "--resolved", "--older-than", "30d", "--yes")
    assert code == 0 and out.strip() == "0 rows deleted (none match)"
    code, out, _ = await cli(capsys, "dlq", "purge", "--resolved", "--older-than", "0s", "--yes")
    assert code == 0 and out.strip() == "2 rows deleted"
    assert await states() == {3: None}

    code, out, _ = await cli(capsys, "dlq", "purge", "--hard", "--older-than", "0s", "--yes")
    assert code == 0 and out.strip() == "1 rows deleted"
    assert await states() == {}


async def test_retry_indexes_rows_valid_now_counts_failures_and_dry_run_changes_nothing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = OpenSearchSink(settings)
    await sink.start()
    try:
        # Listing 503 is already indexed at a newer version than its dead letter.
        newer = {"id": 503, "title": "newer", "price": 1, "status": "active", "version": 10}
        newer["updated_at"] = NOW.isoformat()
        response = await sink.bulk(build_body([PendingWrite(503, 10, newer)]), 1)
        assert not response["errors"]
    finally:
        await sink.stop()
    await seed(
        settings,
        [
            letter(
                1,
                key=b"501",
                value=event(501, 7),
                listing_id=501,
                error_class="mapping_rejected",
                age=timedelta(hours=1),
            ),
            letter(
                2,
                key=b"502",
                value=event(502, 3, action="delete"),
                listing_id=502,
                error_class="retries_exhausted",
                age=timedelta(hours=1),
                action="delete",
            ),
            letter(
                3,
                key=b"503",
                value=event(503, 5),
                listing_id=503,
                error_class="mapping_rejected",
                age=timedelta(hours=1),
            ),
            letter(
                4,
                key=b"504",
                value=b'{"event_id": "not closed',
                listing_id=504,
                error_class="undecodable",
                age=timedelta(hours=1),
                action=None,
            ),
        ],
    )
    dsn = settings.postgres.dsn.get_secret_value()
    before = {row["listing_id"]: dict(row) for row in await dlq_rows(dsn)}

    planned = await cli_json(capsys, "dlq", "retry", "--dry-run")
    assert (planned["selected"], planned["would_write"], planned["would_fail"]) == (4, 3, 1)
    failing = [row for row in planned["rows"] if row["result"] == "would_fail"]
    assert [row["listing_id"] for row in failing] == [504]
    only = await cli_json(capsys, "dlq", "retry", "--dry-run", "--error-class", "undecodable")
    assert only["selected"] == 1
    code, text, _ = await cli(capsys, "dlq", "retry", "--dry-run", "--limit", "2")
    assert code == 0 and "dry run: 2 rows selected" in text
    assert {row["listing_id"]: dict(row) for row in await dlq_rows(dsn)} == before
    assert 501 not in await read_alias(settings.opensearch.hosts[0], settings.opensearch.index)

    report = await cli_json(capsys, "dlq", "retry", "--batch-size", "2")
    assert report["retried"] == 4
    assert (report["written"], report["stale"], report["failed_again"]) == (2, 1, 1)

    after = {row["listing_id"]: row for row in await dlq_rows(dsn)}
    assert {listing: row["resolution"] for listing, row in after.items()} == {
        501: "indexed",
        502: "indexed",
        503: "stale",
        504: None,
    }
    assert all(after[listing]["resolved_at"] is not None for listing in (501, 502, 503))
    left = after[504]
    assert left["attempts"] == before[504]["attempts"] + 1
    assert left["error_class"] == "undecodable"
    assert left["last_error"].startswith("value is not valid JSON")
    assert left["last_attempt_at"] > before[504]["last_attempt_at"]

    docs = await read_alias(settings.opensearch.hosts[0], settings.opensearch.index)
    assert docs[501]["version"] == 7 and docs[501]["title"] == "Listing 501"
    assert docs[503]["version"] == 10 and docs[503]["title"] == "newer"
    assert 502 not in docs
    client = AsyncOpenSearch(hosts=settings.opensearch.hosts)
    try:
        tombstone = await client.get(index=settings.physical_index, id="502")
    finally:
        await client.close()
    assert tombstone["_version"] == 3 and tombstone["_source"]["deleted"] is True

    code, text, _ = await cli(capsys, "dlq", "retry")
    assert code == 0
    assert "retried 1: 0 succeeded" in text and "1 failed again" in text  # open rows only
    [left] = [row for row in await dlq_rows(dsn) if row["resolved_at"] is None]
    assert left["attempts"] == before[504]["attempts"] + 2


async def test_failures_are_one_line_exit_1_and_bad_config_exit_2(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    unique_name: str,
) -> None:
    code, out, err = await cli(
        capsys, "dlq", "stats", "--postgres-dsn", "postgresql://postgres@127.0.0.1:1/nothing"
    )
    assert code == 1 and out == ""
    assert err.startswith("stream-indexer dlq stats: ") and err.count("\n") == 1

    code, _, err = await cli(capsys, "dlq", "list", "--dlq-topic", "x", "--index", "a b")
    assert code == 0  # neither setting is used by `list`

    monkeypatch.setenv("STREAM_INDEXER_DLQ__TABLE", "no_such_table")
    code, _, err = await cli(capsys, "dlq", "list")
    assert code == 1 and "migrate up" in err and err.count("\n") == 1
    monkeypatch.setenv("STREAM_INDEXER_DLQ__TABLE", "bad name;")
    code, _, err = await cli(capsys, "dlq", "list")
    assert code == 2 and "DLQ table name" in err
    monkeypatch.delenv("STREAM_INDEXER_DLQ__TABLE")

    monkeypatch.setenv("STREAM_INDEXER_OPENSEARCH__HOSTS", "not-a-url")
    code, _, err = await cli(capsys, "dlq", "retry")
    assert code == 2 and "STREAM_INDEXER_OPENSEARCH__HOSTS" in err
    monkeypatch.delenv("STREAM_INDEXER_OPENSEARCH__HOSTS")

    code, _, err = await cli(capsys, "dlq", "replay", "--dlq-topic", f"{unique_name}-missing")
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
