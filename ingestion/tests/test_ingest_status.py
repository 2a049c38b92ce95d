"""``manage.py ingest`` as a real process: it says why it streams nothing, and its streams show in
the provider status (the same Redis records a Celery stream writes), cleaned up on exit."""

from __future__ import annotations

import subprocess

import pytest

from exchanges.tests.factories import ExchangeFactory
from ingestion import streams
from ingestion.diagnostics import stream_diagnosis
from ingestion.models import Provider
from ingestion.streams.keys import lease_key, stop_key
from ingestion.tests.factories import ExchangeProviderMappingFactory, ProviderFactory, ProviderInstrumentMappingFactory
from ingestion.tests.support import FAST_SIM, redis_db, sim_exchange, start_ingest, stop_process, wait_for
from instruments.tests.factories import InstrumentFactory

__all__ = ["redis_db"]  # the fixture, from the support module


def _ingest(tmp_path, *args: str) -> tuple[subprocess.Popen, object]:
    log = tmp_path / "ingest.log"
    return start_ingest(log, *args, STREAM_STATUS_INTERVAL_S="0.3"), log


@pytest.mark.django_db(transaction=True)
def test_ingest_says_why_it_streams_nothing(tmp_path, redis_db):
    ProviderFactory(code="REPLAY", kind=Provider.Kind.REPLAY, settings={"path": str(tmp_path / "x.csv")})
    exchange = ExchangeFactory(code="XNAS")
    for symbol in ("AAA", "BBB"):
        InstrumentFactory(exchange=exchange, symbol=symbol)
    process, log = _ingest(tmp_path, "--provider", "replay")
    try:
        wait_for(lambda: "Streaming (REPLAY)" in log.read_text(), 15, "the command to start")
    finally:
        code = stop_process(process)
    output = log.read_text()
    assert code == 0, output
    assert (
        "Not streaming: REPLAY has no exchange mapping for the 2 instruments marked record_data on XNAS: "
        "add one in the admin"
    ) in output
    assert "2 instruments marked record_data have no route to any active provider (XNAS:AAA, XNAS:BBB)" in output


@pytest.mark.django_db
def test_the_diagnosis_names_each_cause():
    assert "No instrument is marked record_data" in " ".join(stream_diagnosis())
    exchange = ExchangeFactory(code="NSE")
    reliance = InstrumentFactory(exchange=exchange, symbol="RELIANCE")
    InstrumentFactory(exchange=exchange, symbol="TCS")
    dhan = ProviderFactory(code="DHAN", kind=Provider.Kind.DHAN, settings={})
    ProviderFactory(code="OFF", is_active=False)
    ExchangeProviderMappingFactory(exchange=exchange, provider=dhan, is_primary=True)
    ProviderInstrumentMappingFactory(provider=dhan, instrument=reliance, search_code="2885", segment="NSE_EQ")

    lines = stream_diagnosis()
    assert "OFF is not active: activate it in the admin (Providers) to stream it." in lines
    assert any(line.startswith("DHAN has no credentials (client_id, access_token missing)") for line in lines)
    assert any(
        line.startswith("DHAN has no instrument mapping (search code) for 1 instrument marked record_data (NSE:TCS)")
        for line in lines
    ), lines
    assert any(line.startswith("1 instrument marked record_data have no route") for line in lines)
    assert stream_diagnosis(provider_codes=["OFF"])[-1].startswith("No active provider among the providers named")


@pytest.mark.django_db(transaction=True)
def test_a_stream_under_ingest_shows_running_in_the_status_api_and_stopped_after_exit(
    tmp_path, redis_db, admin_api_client
):
    sim_exchange()
    sim = Provider.objects.get(code="SIM")
    ProviderFactory(code="SIM9", settings=FAST_SIM)  # streamed by "another worker": left alone
    redis_db.set(lease_key("SIM9"), "celery@elsewhere:7")
    process, log = _ingest(tmp_path)
    try:

        def reported() -> dict | None:
            status = admin_api_client.get(f"/providers/{sim.id}/status").json()
            return status if status["state"] == "running" and status["ticks"] else None

        wait_for(reported, 20, "the ingest stream's status")
        status = reported()
        assert status["worker"].startswith("ingest:") and status["pid"] == process.pid
        assert status["healthy"] is True and status["degraded_reason"] == ""
        assert status["ticks_per_second"] is not None and status["last_tick_at"] is not None
        assert [c["code"] for c in status["clients"]] == ["SIM"] and status["clients"][0]["serving"] == 2
        assert redis_db.get(lease_key("SIM")).decode() == status["worker"]  # the watchdog leaves it alone
        assert redis_db.get(lease_key("SIM9")) == b"celery@elsewhere:7"

        # An operator's stop reaches the ingest process too.
        streams.stream_stop(provider=sim)
        wait_for(lambda: streams.stream_status(provider=sim)["state"] == "stopped", 15, "the stop to apply")
        assert "ingest: not streaming SIM here: stopped by an operator" in log.read_text()
        redis_db.delete(stop_key("SIM"))
        wait_for(lambda: streams.stream_status(provider=sim)["state"] == "running", 15, "the restart")
    finally:
        code = stop_process(process)
    output = log.read_text()
    assert code == 0, output
    assert "ingest: not streaming SIM9 here: already streamed by celery@elsewhere:7" in output
    status = streams.stream_status(provider=sim)
    assert status["state"] == "stopped" and status["stop_reason"] == "stopped" and status["stopped_at"]
    assert redis_db.get(lease_key("SIM")) is None
    assert "Traceback" not in output


@pytest.mark.django_db(transaction=True)
async def test_status_reporting_survives_a_client_stopped_during_a_round_and_any_failed_round(redis_db):
    """A failed round (a client the manager stopped while the round awaited Redis raised
    KeyError) never ends the reporting, which runs in a task of its own: the status froze as it
    was. A provider still held but no longer run is reported stopped by the next round."""
    import asyncio

    import redis.asyncio as aioredis
    from django.conf import settings

    from ingestion.runtime import MarketRuntime
    from ingestion.streams.reporter import RuntimeStatusReporter

    rounds: list[str] = []

    class Reporter(RuntimeStatusReporter):
        async def report(self) -> None:
            rounds.append("round")
            if len(rounds) == 1:
                raise KeyError("SIM")  # what a client vanishing mid-round raised
            await super().report()

    reporter = Reporter(MarketRuntime(provider_codes=["NONE"]))
    reporter.interval_s = 0.05
    reporter._redis = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    # Held, but no longer one of the manager's clients when the round writes: skipped, not a KeyError.
    reporter.held["SIM"] = 0.0
    task = asyncio.create_task(reporter._report_forever())
    try:
        async with asyncio.timeout(5):
            while len(rounds) < 3:  # noqa: ASYNC110 - the reporter has no event for a round
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reporter._redis.aclose()
    assert "SIM" not in reporter.held  # reported stopped on the next good round
