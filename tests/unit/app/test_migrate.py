"""Migration files: golang-migrate naming, up/down pairing, and the files we ship."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_indexer.app.migrate import (
    MigrationError,
    advisory_lock_id,
    collect_migrations,
    default_migrations_dir,
    load_migrations,
    parse_file_name,
)


def test_parse_file_name() -> None:
    assert parse_file_name("000001_create_dlq.up.sql") == (1, "create_dlq", "up")
    assert parse_file_name("000012_add-index.down.sql") == (12, "add-index", "down")
    assert parse_file_name("20240501120000_x.up.sql") == (20240501120000, "x", "up")


@pytest.mark.parametrize("name", ["README.md", "__init__.py", "000001_x.up.sql.orig"])
def test_non_sql_files_are_ignored(name: str) -> None:
    assert parse_file_name(name) is None


@pytest.mark.parametrize(
    "name",
    ["000001_x.sql", "create.up.sql", "000001-x.up.sql", "000001_x.forward.sql", "1_.up.sql"],
)
def test_misnamed_sql_files_are_errors(name: str) -> None:
    with pytest.raises(MigrationError, match="not a migration file name"):
        parse_file_name(name)


def test_pairs_sorted_by_version_not_by_name() -> None:
    migrations = collect_migrations(
        {
            "10_ten.up.sql": "select 10",
            "10_ten.down.sql": "",
            "000002_two.down.sql": "drop 2",
            "000002_two.up.sql": "create 2",
            "notes.txt": "ignored",
        }
    )
    assert [(m.version, m.name, m.up_sql, m.down_sql) for m in migrations] == [
        (2, "two", "create 2", "drop 2"),
        (10, "ten", "select 10", ""),
    ]
    assert migrations[0].label == "000002_two"


def test_up_without_down_is_an_error() -> None:
    with pytest.raises(MigrationError, match=r"000001_a\.up\.sql' has no matching \.down\.sql"):
        collect_migrations({"000001_a.up.sql": "select 1"})


def test_down_without_up_is_an_error() -> None:
    with pytest.raises(MigrationError, match=r"no matching \.up\.sql"):
        collect_migrations({"000001_a.down.sql": "select 1"})


def test_two_files_for_one_version_are_an_error() -> None:
    with pytest.raises(MigrationError, match="version 1 has two up files"):
        collect_migrations({"000001_a.up.sql": "x", "1_b.up.sql": "y", "000001_a.down.sql": "z"})


def test_names_of_a_pair_must_agree() -> None:
    with pytest.raises(MigrationError, match="disagree"):
        collect_migrations({"000001_a.up.sql": "x", "000001_b.down.sql": "y"})


def test_empty_up_file_is_an_error() -> None:
    with pytest.raises(MigrationError, match="empty"):
        collect_migrations({"000001_a.up.sql": "  \n", "000001_a.down.sql": "y"})


def test_load_from_directory(tmp_path: Path) -> None:
    (tmp_path / "000001_a.up.sql").write_text("create table a ();")
    (tmp_path / "000001_a.down.sql").write_text("drop table a;")
    (tmp_path / "__init__.py").write_text("")
    [migration] = load_migrations(tmp_path)
    assert migration.up_sql == "create table a ();"


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        load_migrations(tmp_path / "nope")


def test_shipped_migrations_pair_up_and_create_the_dlq_table() -> None:
    root = default_migrations_dir()
    names = sorted(entry.name for entry in root.iterdir() if entry.name.endswith(".sql"))
    assert "000001_create_opensearch_indexing_dlq.up.sql" in names
    assert all(parse_file_name(name) is not None for name in names)
    migrations = load_migrations()
    assert migrations[0].version == 1
    assert "opensearch_indexing_dlq" in migrations[0].up_sql
    assert "DROP TABLE IF EXISTS opensearch_indexing_dlq" in migrations[0].down_sql
    assert len({m.version for m in migrations}) == len(migrations)


def test_advisory_lock_id_is_a_stable_uint32_per_database_and_schema() -> None:
    first = advisory_lock_id("postgres", "public")
    assert first == advisory_lock_id("postgres", "public")
    assert 0 <= first < 2**32
    assert first != advisory_lock_id("other", "public")
    assert first != advisory_lock_id("postgres", "tenant")
