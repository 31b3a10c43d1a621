"""Dead-letter tools' progress bar: one self-overwriting line on stderr, only on a terminal.

Piped or captured output (CI logs, `--json` consumers) never sees it, so the tools' stdout
stays machine-readable and their stderr stays one clear line on failure.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
#: redraw at most this often (seconds): a fast replay must not spend its time drawing
MIN_INTERVAL_S = 0.1


class Progress:
    """`update(n)` as work is done, `close()` at the end; silent unless `stream` is a TTY."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self._stream, "isatty", lambda: False)()) and total > 0
        self.total = total
        self.done = 0
        self._label = label
        self._drawn_at = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn_at >= MIN_INTERVAL_S or self.done >= self.total:
            self._drawn_at = now
            self._stream.write("\r" + render(self.done, self.total, self._label))
            self._stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._stream.write("\r" + render(self.done, self.total, self._label) + "\n")
            self._stream.flush()
            self.enabled = False


def render(done: int, total: int, label: str) -> str:
    """`label [#####.....] done/total` with the bar capped at full."""
    fraction = 1.0 if total <= 0 else min(1.0, done / total)
    filled = int(fraction * WIDTH)
    return f"{label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{total}"


__all__ = ["Progress", "render"]
