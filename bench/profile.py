"""Profiling (optional, `--profile`): where the indexer's CPU goes, per event.

py-spy samples the indexer child (only frames that are on CPU, so samples ~ CPU time) and
writes collapsed stacks; `summarize` turns them into the functions and packages that cost
the most, in µs per event. py-spy is not a project dependency: `pip install py-spy` in the
virtualenv to use this. A profiled run perturbs throughput, so its figures are diagnostics,
never the benchmark's measurements.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 200
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Attach py-spy to `pid`; it stops by itself when the process exits."""
    binary = py_spy()
    if binary is None:
        return None
    command = [binary, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw"]
    command += ["--nonblocking", "-o", str(out)]
    with out.with_suffix(".log").open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib") else tail
    return path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1] if "/" in path else path


def _package(path: str) -> str:
    short = _short(path)
    if short.startswith("stream_indexer/"):
        return short.removesuffix(".py")
    return short.split("/", 1)[0].removesuffix(".py")


def summarize(raw: Path, events: int, cpu_s: float, top: int = 25) -> dict[str, Any] | None:
    """Self and inclusive cost per function and package, scaled to µs per event (None when
    py-spy wrote nothing, e.g. it could not attach)."""
    if not raw.exists():
        return None
    self_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        parsed = [m for m in (_FRAME.match(f) for f in frames) if m]
        if not parsed:
            continue
        leaf = parsed[-1]
        self_fn[f"{leaf['func']} ({_short(leaf['file'])})"] += count
        self_pkg[_package(leaf["file"])] += count
        for name in {f"{m['func']} ({_short(m['file'])})" for m in parsed}:
            inclusive[name] += count
    per_sample = cpu_s * 1e6 / max(1, events) / max(1, total)

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "share": round(n / total, 3), "us_per_event": round(n * per_sample, 2)}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "self_by_package": table(self_pkg),
        "self_by_function": table(self_fn),
        "inclusive_stream_indexer": table(
            Counter({k: v for k, v in inclusive.items() if "stream_indexer/" in k})
        ),
    }
