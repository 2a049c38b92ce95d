"""Processes of a benchmark: ports, subprocesses, CPU pinning and the web servers under test.

``Process`` starts a command (optionally pinned with ``taskset``) in its own session with its
output in ``bench/results/<name>.log`` and stops its whole process group; ``server`` builds a
daphne or uvicorn ``Process`` on ``SERVER_CORE``; ``pin`` pins a running process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import PYTHON, RESULTS_DIR, ROOT, SERVER_CORE
from bench.environment import bench_env
from bench.usage import descendants, rss_kib


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 30.0, proc=None) -> None:
    """Wait until something accepts connections on ``host:port`` (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def cores() -> int:
    return os.cpu_count() or 1


def pin(core: int | Sequence[int] | None, pid: int = 0) -> None:
    """Pin a process (``0`` = this one) to a core or cores; no-op where unsupported."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return
    wanted = {core} if isinstance(core, int) else set(core)
    wanted &= os.sched_getaffinity(0) | set(range(cores()))
    if wanted:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, wanted)


def taskset_prefix(core: int | None) -> list[str]:
    """``["taskset", "-c", "N"]`` for a command line, or nothing when not available."""
    if core is None or not shutil.which("taskset") or cores() < 2:
        return []
    return ["taskset", "-c", str(core)]


@dataclass
class Process:
    """A subprocess started for a benchmark; ``stop()`` terminates its whole process group."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=bench_env)
    core: int | None = None
    port: int | None = None
    cwd: Path = ROOT
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self, *, wait_timeout: float = 30.0) -> Process:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS_DIR / f"{self.name}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it until stop()
        self.proc = subprocess.Popen(
            taskset_prefix(self.core) + self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self.port is not None:
            try:
                wait_for_port(self.port, timeout=wait_timeout, proc=self.proc)
            except Exception:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def rss_kib(self) -> int:
        """Resident memory of the process and its children (a server's workers), KiB, from /proc."""
        if self.proc is None:
            return 0
        return sum(rss_kib(pid) for pid in descendants(self.proc.pid))

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def daphne_cmd(port: int, app: str = "marketapp.asgi:application") -> list[str]:
    """daphne serving ``app`` on 127.0.0.1:port."""
    return [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--access-log", os.devnull, app]


def uvicorn_cmd(port: int, app: str = "marketapp.asgi:application", *extra: str) -> list[str]:
    """uvicorn serving ``app`` on 127.0.0.1:port (no access log)."""
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        # The README's production command: our lighter WebSocket protocol, frames capped at 64 KiB.
        "--ws",
        "marketapp.uvicorn_ws:WebSocketProtocol",
        "--ws-max-size",
        "65536",
        *extra,
        app,
    ]


def server(
    kind: str,
    name: str,
    app: str = "marketapp.asgi:application",
    *,
    workers: int = 1,
    core: int | Sequence[int] | None = SERVER_CORE,
    **env_extra: str,
) -> Process:
    """A (not yet started) web server process of ``kind`` daphne|uvicorn on ``core``.

    ``workers`` > 1 (uvicorn only) runs that many worker processes, each with its own hub on
    the shared Redis pub/sub, as in production (README, Production); pass ``core`` as the cores
    they may share (``taskset`` takes the first one only when given an int).
    """
    port = free_port()
    if kind == "daphne":
        if workers != 1:
            raise ValueError("daphne runs one process; use uvicorn for workers")
        cmd = daphne_cmd(port, app)
    else:
        cmd = uvicorn_cmd(port, app, *(["--workers", str(workers)] if workers > 1 else []))
    if isinstance(core, int) or core is None:
        return Process(name=name, cmd=cmd, env=bench_env(**env_extra), core=core, port=port)
    cmd = ["taskset", "-c", ",".join(str(c) for c in core), *cmd] if shutil.which("taskset") else cmd
    return Process(name=name, cmd=cmd, env=bench_env(**env_extra), core=None, port=port)
