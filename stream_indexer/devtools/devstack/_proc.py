"""Dev stack plumbing: spawn, watch and stop the local servers' child processes.

The servers must never outlive the process that started them. Three layers make sure:
`EmbeddedStack.stop()` (also registered with atexit), each server's own parent watch where it
has one, and on Linux `PR_SET_PDEATHSIG`, so even a SIGKILLed parent takes its children along.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from stream_indexer.errors import ChildExitedError

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.01


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago; callers retry if a race takes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _death_signal_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel send `sig` to the child when we die (Linux only).

    The kernel ties the signal to the *thread* that forked the child, so servers are spawned
    from the thread that calls `start()` and lives as long as the stack (normally the main one).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(int(sig)))
        if os.getppid() != parent:  # parent died before prctl took effect
            os.kill(os.getpid(), int(sig))

    return preexec


class ChildProcess:
    """One server process: its own session (a terminal's Ctrl-C reaches only us), stderr to a
    log file, and stop = graceful signal, bounded wait, then SIGKILL."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        log_path: Path,
        name: str,
        stop_signal: signal.Signals = signal.SIGTERM,
        death_signal: signal.Signals = signal.SIGKILL,
        stdout_pipe: bool = False,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._stop_signal = stop_signal
        with open(log_path, "ab") as log:
            self._log_offset = log.tell()
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_death_signal_preexec(death_signal),
                user=user,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stdout(self) -> IO[bytes]:
        assert self.popen.stdout is not None, "spawned without stdout_pipe"
        return self.popen.stdout

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, limit: int = 4000) -> str:
        """What the process wrote to its log since it was spawned (for error messages)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return text[-limit:]

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready` until true; raise with the log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                raise ChildExitedError(
                    f"{self.name} exited with {self.popen.returncode} during startup:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(_POLL_S)

    def send(self, sig: signal.Signals | None = None) -> None:
        """Send the graceful stop signal (or `sig`) unless the process is already gone."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig or self._stop_signal)

    def reap(self, deadline: float, escalate: Sequence[signal.Signals] = ()) -> None:
        """Wait until `deadline`; then try each `escalate` signal and finally SIGKILL."""
        for sig in (*escalate, signal.SIGKILL):
            try:
                self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                break
            except subprocess.TimeoutExpired:
                self.send(sig)
                deadline = time.monotonic() + 1.0
        else:
            self.popen.wait()

    def close(self) -> None:
        """Close our end of the stdout pipe (after the process and its readers are done)."""
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def stop(self, timeout: float) -> None:
        """Graceful signal, wait at most `timeout`, then SIGKILL; idempotent."""
        self.send()
        self.reap(time.monotonic() + timeout)
        self.close()


__all__ = ["ChildExitedError", "ChildProcess", "free_port"]
