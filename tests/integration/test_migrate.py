"""Schema migrations against a real Postgres: apply, no-op, revert, refuse dirty, lock, CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from stream_indexer.app.migrate import (
    MigrationError,
    current_version,
    default_migrations_dir,
    load_migrations,
    migrate_down,
    migrate_up,
)
from stream_indexer.cli import main

DLQ_FILES = (
    "000001_create_opensearch_indexing_dlq.up.sql",
    "000001_create_opensearch_indexing_dlq.down.sql",
)


@pytest.fixture
def dlq_only(tmp_path: Path) -> Path:
    """A migrations directory holding only the DLQ migration, so versions are predictable."""
    source = default_migrations_dir()
    for name in DLQ_FILES:
        (tmp_path / name).write_text(source.joinpath(name).read_text(encoding="utf-8"))
    return tmp_path


def add_migration(directory: Path, version: int, name: str, up: str, down: str) -> None:
    (directory / f"{version:06d}_{name}.up.sql").write_text(up)
    (directory / f"{version:06d}_{name}.down.sql").write_text(down)


async def table_exists(dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))
    finally:
        await conn.close()


async def test_up_creates_the_dlq_table_and_records_version_1(pg_dsn: str, dlq_only: Path) -> None:
    assert await current_version(pg_dsn) == (None, False)

    assert await migrate_up(pg_dsn, dlq_only) == [1]

    assert await current_version(pg_dsn) == (1, False)
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT version, dirty FROM schema_migrations")
        columns = dict(
            await conn.fetch(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'opensearch_indexing_dlq'"
            )
        )
        indexes = {
            row["indexname"]
            for row in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'opensearch_indexing_dlq'"
            )
        }
    finally:
        await conn.close()
    assert [tuple(row) for row in rows] == [(1, False)]
    assert columns == {
        "id": "NO",
        "listing_id": "YES",
        "action": "NO",
        "data": "YES",
        "attempts": "NO",
        "last_error": "NO",
        "created_at": "NO",
        "last_attempt_at": "NO",
        "topic": "YES",
        "partition": "YES",
        "offset": "YES",
        "key": "YES",
        "value": "YES",
        "headers": "YES",
        "error_class": "NO",
        "consumer_group": "YES",
    }
    assert {
        "opensearch_indexing_dlq_listing_id_action_key",
        "opensearch_indexing_dlq_source_offset_key",
        "opensearch_indexing_dlq_created_at_idx",
        "opensearch_indexing_dlq_error_class_idx",
    } <= indexes


async def test_up_again_is_a_no_op(pg_dsn: str, dlq_only: Path) -> None:
    await migrate_up(pg_dsn, dlq_only)
    assert await migrate_up(pg_dsn, dlq_only) == []
    assert await current_version(pg_dsn) == (1, False)


async def test_down_removes_the_table(pg_dsn: str, dlq_only: Path) -> None:
    await migrate_up(pg_dsn, dlq_only)

    assert await migrate_down(pg_dsn, dlq_only) == [1]

    assert not await table_exists(pg_dsn, "opensearch_indexing_dlq")
    assert await current_version(pg_dsn) == (None, False)
    assert await migrate_down(pg_dsn, dlq_only) == []


async def test_steps_apply_and_revert_one_at_a_time(pg_dsn: str, dlq_only: Path) -> None:
    add_migration(dlq_only, 2, "two", "CREATE TABLE two (id int);", "DROP TABLE two;")
    add_migration(dlq_only, 7, "seven", "CREATE TABLE seven (id int);", "DROP TABLE seven;")

    assert await migrate_up(pg_dsn, dlq_only, steps=1) == [1]
    assert await migrate_up(pg_dsn, dlq_only) == [2, 7]
    assert await current_version(pg_dsn) == (7, False)

    assert await migrate_down(pg_dsn, dlq_only, steps=2) == [7, 2]
    assert await current_version(pg_dsn) == (1, False)
    assert not await table_exists(pg_dsn, "two")
    assert await table_exists(pg_dsn, "opensearch_indexing_dlq")


async def test_failed_migration_rolls_back_whole_and_stays_clean(
    pg_dsn: str, dlq_only: Path
) -> None:
    await migrate_up(pg_dsn, dlq_only)
    add_migration(
        dlq_only, 2, "broken", "CREATE TABLE half (id int); SELECT no_such_function();", ""
    )

    with pytest.raises(MigrationError, match=r"000002_broken\.up\.sql failed"):
        await migrate_up(pg_dsn, dlq_only)

    assert await current_version(pg_dsn) == (1, False)
    assert not await table_exists(pg_dsn, "half")


async def test_dirty_database_is_refused(pg_dsn: str, dlq_only: Path) -> None:
    await migrate_up(pg_dsn, dlq_only)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET dirty = true")
    finally:
        await conn.close()
    add_migration(dlq_only, 2, "two", "CREATE TABLE two (id int);", "DROP TABLE two;")

    with pytest.raises(MigrationError, match="dirty at version 1"):
        await migrate_up(pg_dsn, dlq_only)
    with pytest.raises(MigrationError, match="dirty at version 1"):
        await migrate_down(pg_dsn, dlq_only)

    assert not await table_exists(pg_dsn, "two")
    assert await table_exists(pg_dsn, "opensearch_indexing_dlq")
    assert await current_version(pg_dsn) == (1, True)


async def test_concurrent_runs_apply_each_migration_once(pg_dsn: str, dlq_only: Path) -> None:
    # Without the lock the second CREATE TABLE (no IF NOT EXISTS) fails, or both record it.
    add_migration(dlq_only, 2, "plain", "CREATE TABLE plain (id int);", "DROP TABLE plain;")

    results = await asyncio.gather(*(migrate_up(pg_dsn, dlq_only) for _ in range(3)))

    assert sorted(results) == [[], [], [1, 2]]
    assert await current_version(pg_dsn) == (2, False)


async def test_shipped_migrations_apply_and_revert_completely(pg_dsn: str) -> None:
    versions = [m.version for m in load_migrations()]

    assert await migrate_up(pg_dsn) == versions
    assert await migrate_down(pg_dsn, steps=len(versions)) == versions[::-1]

    assert await current_version(pg_dsn) == (None, False)
    assert not await table_exists(pg_dsn, "opensearch_indexing_dlq")


async def test_an_existing_legacy_table_is_adopted_with_its_rows(
    pg_dsn: str, dlq_only: Path
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            """
            CREATE TABLE opensearch_indexing_dlq (
                id bigserial PRIMARY KEY, listing_id bigint, action text NOT NULL,
                data jsonb, attempts integer NOT NULL DEFAULT 1, last_error text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                last_attempt_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (listing_id, action));
            INSERT INTO opensearch_indexing_dlq (listing_id, action, data, attempts, last_error)
            VALUES (7, 'index', '{"id": 7}', 3, 'mapper_parsing_exception');
            """
        )
        await migrate_up(pg_dsn, dlq_only)
        row = await conn.fetchrow("SELECT * FROM opensearch_indexing_dlq")
    finally:
        await conn.close()
    assert row["listing_id"] == 7
    assert row["attempts"] == 3
    assert row["error_class"] == "unknown"
    assert row["topic"] is None


def test_cli_up_status_down(
    pg_dsn: str, dlq_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--dsn", pg_dsn, "--path", str(dlq_only)]

    assert main(["migrate", "up", *args]) == 0
    assert capsys.readouterr().out == "applied 000001_create_opensearch_indexing_dlq\n"

    assert main(["migrate", "up", *args]) == 0
    assert "nothing to apply" in capsys.readouterr().out

    add_migration(dlq_only, 2, "two", "CREATE TABLE two (id int);", "DROP TABLE two;")
    assert main(["migrate", "status", *args]) == 0
    assert capsys.readouterr().out == (
        "version: 000001_create_opensearch_indexing_dlq\npending: 000002_two\n"
    )

    assert main(["migrate", "down", *args]) == 0
    assert capsys.readouterr().out == "reverted 000001_create_opensearch_indexing_dlq\n"


def test_cli_reports_a_database_error_in_one_line(
    tmp_path: Path, dlq_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"postgresql://postgres@/postgres?host={tmp_path}/no-socket-here"

    assert main(["migrate", "up", "--dsn", missing, "--path", str(dlq_only)]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("stream-indexer migrate: ")
    assert captured.err.count("\n") == 1


def test_cli_dsn_defaults_to_settings(
    pg_dsn: str, dlq_only: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_INDEXER_POSTGRES__DSN", pg_dsn)

    assert main(["migrate", "up", "--path", str(dlq_only)]) == 0

    assert "applied 000001" in capsys.readouterr().out


async def test_lifecycle_migration_keeps_rows_open_reads_versions_and_reverts(
    pg_dsn: str,
) -> None:
    assert await migrate_up(pg_dsn, steps=3) == [1, 2, 3]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "INSERT INTO opensearch_indexing_dlq (listing_id, action, data, attempts, last_error,"
            " error_class) VALUES (7, 'index', '{\"version\": 12}', 2, 'x', 'mapping_rejected'),"
            " (8, 'index', '{\"version\": \"no\"}', 1, 'x', 'schema_invalid'),"
            " (NULL, 'unknown', NULL, 1, 'x', 'undecodable')"
        )
        assert await migrate_up(pg_dsn, steps=1) == [4]
        rows = await conn.fetch(
            "SELECT listing_id, version, resolved_at, resolution, replayed_at, replay_count"
            " FROM opensearch_indexing_dlq ORDER BY id"
        )
        assert [tuple(row) for row in rows] == [
            (7, 12, None, None, None, 0),
            (8, None, None, None, None, 0),
            (None, None, None, None, None, 0),
        ]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE opensearch_indexing_dlq SET resolution = 'fixed'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE opensearch_indexing_dlq SET resolved_at = now()")
        await conn.execute(
            "UPDATE opensearch_indexing_dlq SET resolved_at = now(), resolution = 'indexed'"
            " WHERE listing_id = 7"
        )

        assert await migrate_down(pg_dsn, steps=1) == [4]
        columns = {
            row["column_name"]
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'opensearch_indexing_dlq'"
            )
        }
        count_rows = await conn.fetchval("SELECT count(*) FROM opensearch_indexing_dlq")
        assert count_rows == 3
    finally:
        await conn.close()
    assert not columns & {"version", "resolved_at", "resolution", "replayed_at", "replay_count"}
    assert "value_sha256" in columns
    assert await current_version(pg_dsn) == (3, False)
