"""Real server processes for the tests: ``marketapp.asgi:application`` under daphne, uvicorn or
``manage.py runmarket``, on a free port, on the test database and Redis.

One place that starts them, so every test runs the server the same way (settings module,
channel-layer prefix, readiness, shutdown) and differs only in what it asks for.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings as django_settings

from marketdata.tests.ws_support import LAYER_PREFIX, redis_url

BASE_DIR = Path(django_settings.BASE_DIR)
APP = "marketapp.asgi:application"
STUCK_TIMEOUT_S = 2.0  # short enough for a test to wait out the server giving up on a slow client
UVICORN_OPTIONS = ("--lifespan", "off", "--log-level", "warning")
WS_PROTOCOL = "marketapp.uvicorn_ws:WebSocketProtocol"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The pytest-django test database, for another process."""
    db = django_settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def children(pid: int) -> set[int]:
    """Direct child processes of ``pid`` (uvicorn's workers under its supervisor)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class Server:
    """A server process serving ``marketapp.asgi:application`` on a free port, started when made.

    ``kind``: ``daphne``, ``uvicorn`` (with ``options``, ``--lifespan off --log-level warning``
    unless given, and ``workers``) or ``runmarket``. ``env`` adds to the environment (the test
    database, Redis and our channel-layer prefix); ``settings_module`` replaces the server tests'
    settings. The log holds stdout and stderr, or stderr alone with ``stdout=False``, for a test
    that reads every line of it as the server's log. Ready once it accepts connections, and with
    ``workers`` > 1 once that many worker processes run (the supervisor listens before they do).
    """

    def __init__(
        self,
        kind: str = "uvicorn",
        *,
        options: list[str] | tuple[str, ...] = UVICORN_OPTIONS,
        workers: int = 1,
        env: dict[str, str] | None = None,
        settings_module: str = "marketdata.tests.ws_server_settings",
        stdout: bool = True,
        start_within: float = 60,
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix=f"server-{kind}-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url(),
            "WS_TEST_LAYER_PREFIX": LAYER_PREFIX,
            "WS_STUCK_TIMEOUT_S": str(STUCK_TIMEOUT_S),
            **(env or {}),
        }
        out = (self.log, subprocess.STDOUT) if stdout else (subprocess.DEVNULL, self.log)
        self.proc = subprocess.Popen(
            self._command(options, workers), cwd=BASE_DIR, env=full_env, stdout=out[0], stderr=out[1]
        )
        try:
            self.wait_for(lambda: self._ready(workers), f"{kind} to start", within=start_within)
        except BaseException:
            self.stop()
            raise

    def _command(self, options, workers: int) -> list[str]:
        port = str(self.port)
        if self.kind == "daphne":
            return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", port, APP]
        if self.kind == "runmarket":
            return [sys.executable, "manage.py", "runmarket", "--port", port]
        # The README's server: uvicorn with our WebSocket protocol (``options`` may name another).
        cmd = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", port, "--ws", WS_PROTOCOL]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        return cmd + list(options)

    def _ready(self, workers: int) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited: {self.tail()}")
        if workers > 1 and len(children(self.proc.pid) - {self.proc.pid}) < workers:
            return False
        return listening(self.port)

    def wait_for(self, condition, what: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited for {what}: {self.tail(3000)}")
            time.sleep(0.2)

    def url(self, token: str | None = None) -> str:
        return f"ws://127.0.0.1:{self.port}/ws" + (f"?token={token}" if token else "")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def tail(self, chars: int = 5000) -> str:
        return self.output()[-chars:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)
