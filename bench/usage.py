"""What a benchmark's processes use: wall and CPU time, CPU seconds and resident memory of a pid.

``Timer`` times a block in this process; ``cpu_seconds`` and ``rss_kib`` read another
process's CPU time and memory from ``/proc`` (0 when unknown).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


class Timer:
    """``with Timer() as t: ...``; then ``t.elapsed`` (wall s) and ``t.cpu`` (this process's CPU s)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.elapsed = 0.0
        self.cpu = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu_start


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when unknown)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
