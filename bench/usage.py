"""What a benchmark's processes use: wall and CPU time, CPU seconds and resident memory of a pid.

``Timer`` times a block in this process; ``cpu_seconds`` and ``rss_kib`` read another
process's CPU time and memory from ``/proc`` (0 when unknown); ``CpuWindow`` gives the server's
and the load generators' CPU over a measured window, and whether the generators saturated.
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


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (a multi-process server's workers), from /proc."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo.extend(int(child) for child in (task / "children").read_text().split())
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    return sum(cpu_seconds(p) for p in descendants(pid))


def core_times() -> dict[int, tuple[float, float]]:
    """``{core: (busy jiffies, total jiffies)}`` from /proc/stat (idle and iowait are not busy)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values[:8]]
                total = sum(ticks)
                out[int(name[3:])] = (total - ticks[3] - ticks[4], total)
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when unknown)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


LOADGEN_SATURATED_PCT = 85.0


class CpuWindow:
    """CPU use of the server and of the load side over one measured window, in percent of one core.

    ``server`` and ``loadgen`` map a label to a pid (the load side: the load-generator processes,
    and the publisher or fake feed when it shares their core). ``start()`` then ``stop()``
    returns ``server_cpu_percent``, ``loadgen_cpu_percent`` (the load side in total),
    ``loadgen_cpu_percent_by_process``, ``loadgen_saturated`` (the load side used more than
    ``LOADGEN_SATURATED_PCT`` of the ``load_cores`` it runs on, so what the run measured may be
    the clients' limit, not the server's) and ``core_busy_percent`` (each core, all processes).
    """

    def __init__(self, *, server: dict[str, int], loadgen: dict[str, int], load_cores: int = 1) -> None:
        self.server = dict(server)
        self.loadgen = dict(loadgen)
        self.load_cores = max(load_cores, 1)
        self.before: dict[str, float] = {}
        self.cores_before: dict[int, tuple[float, float]] = {}
        self.started = 0.0

    def _read(self) -> dict[str, float]:
        # A server's workers count as the server (uvicorn --workers runs them as children); the
        # load side's pids are counted alone (the publisher is the bench process, parent of all).
        out = {label: tree_cpu_seconds(pid) for label, pid in self.server.items()}
        out.update({label: cpu_seconds(pid) for label, pid in self.loadgen.items()})
        return out

    def start(self) -> CpuWindow:
        self.before = self._read()
        self.cores_before = core_times()
        self.started = time.perf_counter()
        return self

    def stop(self) -> dict:
        after = self._read()
        cores_after = core_times()
        # How busy each core was, whoever used it: on a shared machine a server below 100 % of its
        # core may still have had no more of it (other jobs took the rest).
        busy = {}
        for core, (busy1, total1) in cores_after.items():
            busy0, total0 = self.cores_before.get(core, (busy1, total1))
            busy[f"core{core}"] = round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1)
        seconds = max(time.perf_counter() - self.started, 1e-9)
        pct = {label: round(100 * (after[label] - self.before.get(label, 0.0)) / seconds, 1) for label in after}
        load = {label: pct[label] for label in self.loadgen}
        total = round(sum(load.values()), 1)
        return {
            "server_cpu_percent": round(sum(pct[label] for label in self.server), 1),
            "loadgen_cpu_percent": total,
            "loadgen_cpu_percent_by_process": load,
            "loadgen_saturated": total > LOADGEN_SATURATED_PCT * self.load_cores,
            "core_busy_percent": busy,
            "cpu_window_s": round(seconds, 2),
        }
