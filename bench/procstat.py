"""Benchmark measurement: a live process's CPU and memory, read from /proc.

rusage sees a child's CPU only once it has exited; the consumers under test (and a baseline's
pool workers) are measured while they run.
"""

from __future__ import annotations

import os
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_MEMORY = ("VmRSS:", "VmHWM:")


def read_proc(pid: int) -> tuple[float, int, int]:
    """(CPU seconds user+sys, RSS KiB, peak RSS KiB) of a live process; zeros once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0, 0
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    memory = {line[:6]: int(line.split()[1]) for line in status.splitlines() if line[:6] in _MEMORY}
    return cpu, memory.get("VmRSS:", 0), memory.get("VmHWM:", 0)
