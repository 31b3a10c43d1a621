"""A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`) for the verify push tests.

    with Pushgateway(tmp_path) as gateway:
        push to gateway.url ...; gateway.metrics() is its /metrics text

Listens on a free loopback port, persists nothing outside `workdir`, stopped on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

INSTALL_HINT = "Debian: apt-get install --no-install-recommends prometheus-pushgateway"


def pushgateway_binary() -> str | None:
    return shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Pushgateway:
    def __init__(self, workdir: Path, binary: str) -> None:
        self._workdir = workdir
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.port = _free_port()
        log = (self._workdir / "pushgateway.log").open("wb")
        self._proc = subprocess.Popen(
            [
                self._binary,
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--persistence.file={self._workdir / 'pushgateway.data'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                log_text = (self._workdir / "pushgateway.log").read_text(errors="replace")
                raise RuntimeError(f"the Pushgateway did not start: {log_text[-2000:]}")
            time.sleep(0.05)  # polling a child's port: there is no event to await

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as answer:
            text: str = answer.read().decode()
            return text

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
