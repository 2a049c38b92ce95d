"""What the tests of the ingest runtime and of real ``manage.py`` processes share (here, in
``test_ingest_status`` and in ``marketapp``'s ``test_metrics``): the fast SIM provider on one
exchange, the test Redis database, starting ``manage.py ingest``, waiting for a condition and
stopping a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from exchanges.tests.factories import ExchangeFactory
from ingestion.models import Provider
from ingestion.tests.factories import ExchangeProviderMappingFactory, ProviderFactory
from instruments.tests.factories import InstrumentFactory

ROOT = Path(settings.BASE_DIR)
FAST_SIM = {"seed": 3, "ticks_per_second": 20, "tick_interval_ms": 50, "follow_sessions": False}


def sim_exchange() -> list[int]:
    """The SIM provider on one exchange with two instruments."""
    sim = ProviderFactory(code="SIM", kind=Provider.Kind.SIMULATED, settings=FAST_SIM)
    exchange = ExchangeFactory(code="XNAS")
    ExchangeProviderMappingFactory(exchange=exchange, provider=sim, is_primary=True, priority=10)
    return [InstrumentFactory(exchange=exchange, symbol=s).id for s in ("AAA", "BBB")]


def wait_for(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen, within: float = 10.0) -> int:
    """SIGINT (Ctrl-C) and the exit code; a process that does not stop in time is killed and fails."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"did not stop within {within} s of SIGINT") from None


@pytest.fixture
def redis_db():
    """The test Redis database, empty before and after."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def start_ingest(log: Path, *args: str, **env: str) -> subprocess.Popen:
    """``manage.py ingest --refresh 0.5 *args`` on the test database and Redis, output to ``log``.

    ``env`` adds to the environment (LOG_LEVEL is INFO unless given).
    """
    from marketdata.tests.servers import database_url

    full_env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL, "LOG_LEVEL": "INFO"}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "ingest", "--refresh", "0.5", *args],
            cwd=ROOT,
            env={**full_env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
