"""Dev stack: the OpenSearch API server (osmem-server, in memory) the pipeline indexes into.

osmem picks its own free port and announces `{"url": ...}` on stdout. A thread keeps draining
stdout for the life of the process so the server can never block on a full pipe.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from stream_indexer.devtools.devstack._proc import ChildProcess


class OsmemProcess:
    """One osmem-server child process; `start()` returns its base URL."""

    def __init__(self, log_path: Path, *, host: str = "127.0.0.1") -> None:
        self._log_path = log_path
        self._host = host
        self._child: ChildProcess | None = None
        self._reader: threading.Thread | None = None
        self._announced = threading.Event()
        self.url: str | None = None
        self.version: str | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self, timeout: float = 10.0) -> str:
        """Spawn the server and wait for its ready line; returns `http://host:port`."""
        from osmem_server import resolve_binary

        child = ChildProcess(
            [
                resolve_binary(),
                "-addr",
                f"{self._host}:0",
                "-no-stdin-watch",
                "-parent-pid",
                str(os.getpid()),
            ],
            log_path=self._log_path,
            name="osmem-server",
            stop_signal=signal.SIGTERM,
            death_signal=signal.SIGKILL,
            stdout_pipe=True,
        )
        self._child = child
        self._reader = threading.Thread(
            target=self._drain, args=(child,), name="osmem-stdout", daemon=True
        )
        self._reader.start()
        try:
            child.wait_until(self._announced.is_set, timeout)
            if self.url is None:
                child.wait_until(lambda: False, 1.0)  # EOF without a URL: report the exit
        except BaseException:
            self.stop(1.0)
            raise
        assert self.url is not None
        return self.url

    def _drain(self, child: ChildProcess) -> None:
        """Read stdout to EOF; the first JSON line with a "url" marks the server ready."""
        try:
            for line in child.stdout:
                if self._announced.is_set():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and isinstance(msg.get("url"), str):
                    self.url = msg["url"]
                    self.version = str(msg.get("version", ""))
                    self._announced.set()
        except (OSError, ValueError):  # pipe closed under us during a forced stop
            pass
        finally:
            self._announced.set()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, SIGKILL after `timeout`, then drain and close the pipe; idempotent."""
        child = self._child
        if child is None:
            return
        child.send()
        child.reap(time.monotonic() + timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        child.close()
