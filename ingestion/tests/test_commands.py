"""``ingest`` and ``runmarket``: argument checks, the runtime they drive, and real processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from ingestion.runtime import MarketRuntime, run_until_signalled
from ingestion.tests.factories import ProviderFactory
from ingestion.tests.support import ROOT, redis_db, sim_exchange, start_ingest, stop_process, wait_for
from instruments.reference_data import DEFAULT_ADMIN_EMAIL, DEMO_PRICES
from marketdata.tests.servers import free_port

__all__ = ["redis_db"]  # the fixture, from the support module


@pytest.mark.django_db
def test_ingest_refuses_unknown_provider_codes():
    ProviderFactory(code="SIM")
    with pytest.raises(CommandError, match=r"Unknown provider code\(s\): NOPE$"):
        call_command("ingest", "--provider", "NOPE", "--provider", "sim")


@pytest.mark.django_db(transaction=True)
async def test_the_runtime_streams_until_told_to_stop(redis_db):
    ids = await sync_to_async(sim_exchange)()
    runtime = MarketRuntime(provider_codes=["SIM"], with_saver=True, refresh_s=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(run_until_signalled(runtime, stop))
    try:
        async with asyncio.timeout(10):
            while len(await runtime.store.latest_quotes(ids)) < len(ids):  # noqa: ASYNC110 - Redis state
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await running
    assert runtime.manager.clients == {}  # every feed client stopped
    quotes = await runtime.store.latest_quotes(ids)
    assert {q.provider for q in quotes.values()} == {"SIM"}
    assert runtime.engine.stats.ticks_in >= len(ids)
    await runtime.store.close()


@pytest.mark.django_db(transaction=True)
def test_ingest_streams_into_redis_and_stops_cleanly_on_ctrl_c(tmp_path, redis_db):
    ids = sim_exchange()
    log = tmp_path / "ingest.log"
    process = start_ingest(log, "--provider", "sim")
    try:
        # Quotes of both instruments land in the Redis hash the web side reads.
        wait_for(lambda: all(redis_db.hexists("md:q", i) for i in ids), 15, "quotes in Redis")
    finally:
        code = stop_process(process)
    output = log.read_text()
    assert code == 0, output
    assert "provider SIM (simulated) started" in output
    assert "market runtime: " in output and "start-up objects frozen out of the garbage collector" in output
    assert "provider SIM stopped" in output and "market runtime stopped" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_runmarket_serves_and_streams_on_the_embedded_default(tmp_path):
    """The zero-configuration mode: SQLite, memory tick store, one process, SIM quotes."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        VAR_DIR=str(tmp_path),
        DEMO_ADMIN_PASSWORD="demo-pass-12345",
        LOG_LEVEL="INFO",
        SIM_FOLLOW_SESSIONS="false",  # quotes at any hour of the test run
        DEMO_HISTORY_SESSIONS="1",
    )
    for step in (["migrate", "--noinput"], ["seed_demo"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *step], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "marketapp.sqlite3").is_file()

    port = free_port()
    log = tmp_path / "runmarket.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runmarket", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:

            def healthy() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=1) as response:
                        return response.status == 200
                except OSError:
                    return False

            wait_for(healthy, 10, "GET /health/ to answer 200")
            wait_for(lambda: "feed SIM: idle -> streaming" in log.read_text(), 5, "the SIM feed to stream")
            quote = _first_quote(port, "NASDAQ:AAPL", password=env["DEMO_ADMIN_PASSWORD"])
            # seed_demo wrote a past session of history, rolled up: the daily chart is not empty.
            daily = _authed_get(port, "/marketdata/daily?symbol=NASDAQ:AAPL", password=env["DEMO_ADMIN_PASSWORD"])
        finally:
            code = stop_process(process)
    output = log.read_text()
    assert code == 0, output
    assert "provider SIM (simulated) started" in output
    assert "start-up objects frozen out of the garbage collector" in output
    assert "market runtime stopped" in output
    assert "Traceback" not in output
    # One rolled-up daily bar of the seeded session; the simulator's walk starts from its close.
    assert len(daily["results"]) == 1, daily
    last_close = daily["results"][-1]["close"]
    assert last_close != float(DEMO_PRICES[("NASDAQ", "AAPL")])  # the seeded walk moved
    assert (quote["symbol"], quote["exchange"]) == ("AAPL", "NASDAQ")
    assert quote["open"] == last_close and quote["close"] > 0 and quote["seq"] >= 1


def _access_token(port: int, password: str) -> str:
    login = urllib.request.Request(
        f"http://127.0.0.1:{port}/auth/login",
        data=json.dumps({"email": DEFAULT_ADMIN_EMAIL, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=5) as response:  # noqa: S310 - a fixed http://127.0.0.1 URL
        return json.load(response)["access"]


def _authed_get(port: int, path: str, *, password: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {_access_token(port, password)}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a fixed http://127.0.0.1 URL
        return json.load(response)


def _first_quote(port: int, symbol: str, *, password: str) -> dict:
    """Log in as the demo admin and poll ``/marketdata/quote`` until the symbol has a quote."""
    login = urllib.request.Request(
        f"http://127.0.0.1:{port}/auth/login",
        data=json.dumps({"email": DEFAULT_ADMIN_EMAIL, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=5) as response:  # noqa: S310 - a fixed http://127.0.0.1 URL
        access = json.load(response)["access"]
    quotes: list[dict] = []

    def quoted() -> bool:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/marketdata/quote?symbols={symbol}", headers={"Authorization": f"Bearer {access}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a fixed http://127.0.0.1 URL
            quotes[:] = json.load(response)["quotes"]
        return bool(quotes)

    wait_for(quoted, 10, f"a live quote of {symbol}")
    return quotes[0]
