"""Helpers for tests that run real Celery workers and provider streams against the test databases."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from exchanges.tests.factories import ExchangeFactory
from ingestion.models import Provider
from ingestion.tests.factories import ExchangeProviderMappingFactory, ProviderFactory
from instruments.tests.factories import InstrumentFactory

ROOT = Path(settings.BASE_DIR)
FAST_SIM = {"seed": 3, "ticks_per_second": 20, "tick_interval_ms": 50, "follow_sessions": False}
# Short leases and quick reports, so takeovers happen within seconds.
STREAM_ENV = {
    "STREAM_LEASE_TTL_S": "3",
    "STREAM_STATUS_INTERVAL_S": "0.5",
    "STREAM_REFRESH_S": "1",
    "STREAM_START_DEDUPE_S": "10",
}


def sim_provider(code: str = "SIM", *, exchange_code: str = "XNAS", primary: bool = True, symbols=("AAA", "BBB")):
    """A fast simulated provider serving one 24-hour exchange with a few instruments."""
    provider = ProviderFactory(code=code, kind=Provider.Kind.SIMULATED, settings=FAST_SIM)
    exchange = ExchangeFactory(code=exchange_code, is_open_24_hours=True)
    ExchangeProviderMappingFactory(exchange=exchange, provider=provider, is_primary=primary, priority=10)
    for symbol in symbols:
        InstrumentFactory(exchange=exchange, symbol=symbol)
    return provider


def database_url() -> str:
    """The pytest-django test database, for processes started by a test."""
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(predicate: Callable[[], object], within: float, what: str, every: float = 0.1):
    """Poll until ``predicate`` returns something truthy; returns it, or fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(every)


class CeleryWorker:
    """A real ``celery -A marketapp worker`` process in its own process group, logging to a file."""

    def __init__(self, name: str, log_dir: Path, *, queues: str = "streams", concurrency: int = 2) -> None:
        self.name = name
        self.node = f"{name}@{os.uname().nodename}"
        self.log = log_dir / f"{name}.log"
        env = {
            **os.environ,
            **STREAM_ENV,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
            "LOG_LEVEL": "INFO",
        }
        # The production command line, plus flags that only make start-up quicker.
        command = [
            *(sys.executable, "-m", "celery", "-A", "marketapp", "worker"),
            *("-Q", queues, "-c", str(concurrency), "--prefetch-multiplier", "1", "-n", self.node),
            *("--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
        self._out = self.log.open("w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self, since: int = 0) -> str:
        """The log, from character ``since`` on (see ``mark``)."""
        return self.log.read_text(errors="replace")[since:]

    def mark(self) -> int:
        """Where the log ends now, so a test reads only what happened during it."""
        return len(self.text())

    def wait_ready(self, within: float = 30.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited early:\n{self.text()[-3000:]}")
            return " ready." in self.text()

        wait_for(ready, within, f"worker {self.name} to be ready")

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is this worker or one of its pool processes (same process group)."""
        try:
            return os.getpgid(pid) == self.pid
        except ProcessLookupError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool children, no clean-up at all."""
        os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, within: float = 20.0) -> None:
        """Warm shutdown (SIGTERM); killed if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=within)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # orphaned pool children, if any
            os.killpg(self.pid, signal.SIGKILL)
        self._out.close()
