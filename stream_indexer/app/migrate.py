"""Schema migrations: the Postgres tables the pipeline needs (the DLQ table, the outbox), applied
before any pod starts (`stream-indexer migrate up`, a helm pre-install/pre-upgrade hook).

The layout is golang-migrate's, so a team can switch tools without touching the database:
`NNNNNN_name.up.sql` / `NNNNNN_name.down.sql` pairs, a single-row
`schema_migrations(version bigint, dirty boolean)` table, and the same session advisory lock id,
so this runner and golang-migrate also exclude each other. Unlike golang-migrate, each
migration runs in one transaction together with its version change: a failed migration rolls
back whole and leaves the version where it was, never dirty. A dirty flag we find was set by
another tool or by hand, and we refuse to guess what state the schema is in.

Statements that cannot run inside a transaction (`CREATE INDEX CONCURRENTLY`) are therefore not
supported in migration files.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg

from stream_indexer.errors import MigrationError

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "stream_indexer.migrations"
VERSION_TABLE = "schema_migrations"
CONNECT_TIMEOUT_S = 10.0
# golang-migrate's salt (database/util.go): our lock id equals the one it takes.
_ADVISORY_LOCK_SALT = 1486364155
_FILE_NAME = re.compile(
    r"^(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9_-]+)\.(?P<direction>up|down)\.sql$"
)

_CREATE_VERSION_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
    "(version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One version: its name and both directions' SQL."""

    version: int
    name: str
    up_sql: str
    down_sql: str

    @property
    def label(self) -> str:
        return f"{self.version:06d}_{self.name}"


def parse_file_name(file_name: str) -> tuple[int, str, str] | None:
    """`(version, name, "up" | "down")` for a migration file, None for files that are not SQL.

    A `.sql` file that does not follow `NNNNNN_name.up.sql` / `.down.sql` is an error rather
    than silently skipped: a typo must not turn into a migration that never runs.
    """
    if not file_name.endswith(".sql"):
        return None
    match = _FILE_NAME.match(file_name)
    if match is None:
        raise MigrationError(
            f"{file_name!r} is not a migration file name (expected NNNNNN_name.up.sql "
            "or NNNNNN_name.down.sql)"
        )
    return int(match["version"]), match["name"], match["direction"]


def collect_migrations(files: Mapping[str, str]) -> list[Migration]:
    """Pair `{file name: SQL}` into migrations sorted by version; every up needs its down."""
    found: dict[int, dict[str, tuple[str, str, str]]] = {}
    for file_name, sql in files.items():
        parsed = parse_file_name(file_name)
        if parsed is None:
            continue
        version, name, direction = parsed
        sides = found.setdefault(version, {})
        if direction in sides:
            raise MigrationError(
                f"version {version} has two {direction} files: "
                f"{sides[direction][0]!r} and {file_name!r}"
            )
        sides[direction] = (file_name, name, sql)
    migrations = []
    for version in sorted(found):
        sides = found[version]
        for direction in ("up", "down"):
            if direction not in sides:
                other = next(iter(sides.values()))[0]
                raise MigrationError(f"{other!r} has no matching .{direction}.sql file")
        up_file, up_name, up_sql = sides["up"]
        down_file, down_name, down_sql = sides["down"]
        if up_name != down_name:
            raise MigrationError(f"{up_file!r} and {down_file!r} disagree on the name")
        if not up_sql.strip():
            raise MigrationError(f"{up_file!r} is empty")
        migrations.append(Migration(version, up_name, up_sql, down_sql))
    return migrations


def default_migrations_dir() -> Traversable:
    """The `migrations/` shipped inside the installed package, else the source checkout's."""
    with suppress(ModuleNotFoundError):
        packaged = resources.files(MIGRATIONS_PACKAGE)
        if any(entry.name.endswith(".sql") for entry in packaged.iterdir()):
            return packaged
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if checkout.is_dir():
        return checkout
    raise MigrationError(
        f"no migrations found: neither the {MIGRATIONS_PACKAGE} package nor {checkout} "
        "exists; pass the directory explicitly (--path)"
    )


def load_migrations(directory: Path | Traversable | None = None) -> list[Migration]:
    """Read and pair the migration files of `directory` (default: the shipped ones)."""
    root = default_migrations_dir() if directory is None else directory
    if not root.is_dir():
        raise MigrationError(f"migrations directory {root} does not exist")
    files = {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in root.iterdir()
        if entry.is_file() and entry.name.endswith(".sql")
    }
    return collect_migrations(files)


def advisory_lock_id(database: str, schema: str, table: str = VERSION_TABLE) -> int:
    """golang-migrate's lock id for (database, schema, table): crc32 x salt, as uint32."""
    key = "\x00".join((schema, table, database)).encode("utf-8")
    return (zlib.crc32(key) * _ADVISORY_LOCK_SALT) & 0xFFFFFFFF


async def _read_version(conn: asyncpg.Connection) -> tuple[int | None, bool]:
    row = await conn.fetchrow(
        f"SELECT version, dirty FROM {VERSION_TABLE} ORDER BY version DESC LIMIT 1"
    )
    if row is None:
        return None, False
    return int(row["version"]), bool(row["dirty"])


def _refuse_dirty(version: int | None, dirty: bool) -> None:
    if dirty:
        raise MigrationError(
            f"database is dirty at version {version}: a migration stopped part-way outside "
            "this tool; check the schema by hand, then mark it clean "
            f"(UPDATE {VERSION_TABLE} SET dirty = false, or `migrate force` with golang-migrate)"
        )


@asynccontextmanager
async def _locked(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding the migration lock, with the version table in place."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        database, schema = await conn.fetchrow("SELECT current_database(), current_schema()")
        if schema is None:
            raise MigrationError("no current schema: the search_path names no existing schema")
        lock_id = advisory_lock_id(database, schema)
        # Waits for any other runner (another pod, the helm hook, golang-migrate).
        await conn.execute("SELECT pg_advisory_lock($1)", lock_id)
        try:
            await conn.execute(_CREATE_VERSION_TABLE)
            yield conn
        finally:
            # Closing the session releases the lock too; unlocking first is only politeness.
            with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_id)
    finally:
        await conn.close()


async def _apply(
    conn: asyncpg.Connection, migration: Migration, direction: str, new_version: int | None
) -> None:
    """Run one migration file and record `new_version`, all in one transaction."""
    sql = migration.up_sql if direction == "up" else migration.down_sql
    file_name = f"{migration.label}.{direction}.sql"
    try:
        async with conn.transaction():
            if sql.strip():
                await conn.execute(sql)
            await conn.execute(f"DELETE FROM {VERSION_TABLE}")
            if new_version is not None:
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, dirty) VALUES ($1, false)",
                    new_version,
                )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{file_name} failed and was rolled back: {exc}") from exc
    log.info("migration applied", extra={"migration": file_name})


async def migrate_up(
    dsn: str, directory: Path | Traversable | None = None, *, steps: int | None = None
) -> list[int]:
    """Apply pending migrations in version order (at most `steps`); returns versions applied."""
    if steps is not None and steps < 0:
        raise ValueError("steps must be >= 0")
    migrations = load_migrations(directory)
    applied: list[int] = []
    async with _locked(dsn) as conn:
        current, dirty = await _read_version(conn)
        _refuse_dirty(current, dirty)
        pending = [m for m in migrations if current is None or m.version > current]
        if steps is not None:
            pending = pending[:steps]
        for migration in pending:
            await _apply(conn, migration, "up", migration.version)
            applied.append(migration.version)
    return applied


async def migrate_down(
    dsn: str, directory: Path | Traversable | None = None, *, steps: int = 1
) -> list[int]:
    """Revert the latest `steps` applied migrations; returns the versions reverted, newest first."""
    if steps < 0:
        raise ValueError("steps must be >= 0")
    migrations = load_migrations(directory)
    by_version = {m.version: m for m in migrations}
    reverted: list[int] = []
    async with _locked(dsn) as conn:
        current, dirty = await _read_version(conn)
        _refuse_dirty(current, dirty)
        while current is not None and len(reverted) < steps:
            migration = by_version.get(current)
            if migration is None:
                raise MigrationError(
                    f"database is at version {current}, which has no migration file here"
                )
            earlier = [m.version for m in migrations if m.version < current]
            previous = earlier[-1] if earlier else None
            await _apply(conn, migration, "down", previous)
            reverted.append(current)
            current = previous
    return reverted


async def current_version(dsn: str) -> tuple[int | None, bool]:
    """`(version, dirty)` recorded in the database; `(None, False)` before the first migration."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", VERSION_TABLE)
        if not exists:
            return None, False
        return await _read_version(conn)
    finally:
        await conn.close()


__all__ = [
    "Migration",
    "MigrationError",
    "advisory_lock_id",
    "collect_migrations",
    "current_version",
    "default_migrations_dir",
    "load_migrations",
    "migrate_down",
    "migrate_up",
    "parse_file_name",
]
