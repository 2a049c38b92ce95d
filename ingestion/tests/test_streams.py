"""Provider streams: the lease, the runner in this process, the watchdog, start/stop/status.

Real Redis and PostgreSQL; the runner runs in the test's event loop (the Celery workers are in
test_stream_faults.py).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from exchanges.tests.factories import ExchangeFactory
from ingestion import streams
from ingestion.models import Provider
from ingestion.streaming import stream_plan
from ingestion.streams.keys import lease_key, starting_key, status_key, stop_key
from ingestion.streams.runner import _healthy_streams
from ingestion.tests.celery_workers import sim_provider
from ingestion.tests.factories import (
    ExchangeProviderMappingFactory,
    ProviderFactory,
    ProviderInstrumentMappingFactory,
)
from instruments.tests.factories import InstrumentFactory


@pytest.fixture
def rdb():
    """The test Redis database (decoded), empty before and after."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
async def aredis(rdb):
    client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


class Recorder:
    """Stands in for the broker where a test only needs to know what would be queued."""

    def __init__(self) -> None:
        self.codes: list[str] = []

    def __call__(self, code: str) -> None:
        self.codes.append(code)


# --- the lease --------------------------------------------------------------------------------------


async def test_only_the_holder_renews_or_releases_the_lease(aredis):
    mine = streams.StreamLease(aredis, provider_code="SIM", holder="w1:1", ttl_s=5)
    theirs = streams.StreamLease(aredis, provider_code="SIM", holder="w2:2", ttl_s=5)

    assert await mine.acquire()
    assert not await theirs.acquire()
    assert not await theirs.renew()
    assert not await theirs.release()
    assert await aredis.get(lease_key("SIM")) == "w1:1"

    await aredis.pexpire(lease_key("SIM"), 1000)
    assert await mine.renew()
    assert await aredis.pttl(lease_key("SIM")) > 4000  # renewal restores the full TTL

    assert await mine.release()
    assert await aredis.get(lease_key("SIM")) is None
    assert not await mine.renew()  # released: nothing left to renew
    assert await theirs.acquire()
    assert await theirs.holder() == "w2:2"


async def test_a_lapsed_lease_goes_to_the_next_taker_and_the_old_holder_cannot_renew(aredis):
    old = streams.StreamLease(aredis, provider_code="SIM", holder="w1:1", ttl_s=0.2)
    new = streams.StreamLease(aredis, provider_code="SIM", holder="w2:2", ttl_s=5)
    assert await old.acquire()
    await asyncio.sleep(0.3)
    assert await new.acquire()
    assert not await old.renew()
    assert not await old.release()
    assert await new.holder() == "w2:2"


# --- the runner in this process ---------------------------------------------------------------------


def _runner(code: str = "SIM", **kwargs) -> streams.StreamRunner:
    options = {"worker_id": "test@host:1", "ttl_s": 1.5, "status_interval_s": 0.2, "refresh_s": 0.5}
    return streams.StreamRunner(provider_code=code, **(options | kwargs))


async def _until(predicate, within: float, what: str):
    async with asyncio.timeout(within):
        while not (value := await predicate()):  # noqa: ASYNC110 - state in Redis, no event to wait on
            await asyncio.sleep(0.05)
    assert value, what
    return value


async def _running_status(code: str = "SIM") -> dict:
    async def ready():
        provider = await Provider.objects.aget(code=code)
        status = await sync_to_async(streams.stream_status)(provider=provider)
        return status if status["running"] and status["ticks"] else None

    return await _until(ready, 10, "a running stream with ticks")


@pytest.mark.django_db(transaction=True)
async def test_the_runner_streams_reports_and_stops_when_an_operator_says(aredis):
    provider = await sync_to_async(sim_provider)()
    runner = _runner()
    task = asyncio.create_task(runner.run())
    status = await _running_status()
    assert status["state"] == "running"
    assert status["worker"] == "test@host:1"
    assert status["desired"] is True
    assert status["last_tick_at"] is not None
    assert status["ticks_per_second"] > 0
    assert [c["code"] for c in status["clients"]] == ["SIM"]
    assert status["clients"][0]["status"] == "streaming"

    await sync_to_async(streams.stream_stop)(provider=provider)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.started and outcome.reason == "stopped by an operator"
    assert runner.runtime.manager.clients == {}
    assert await aredis.get(lease_key("SIM")) is None  # released
    status = await sync_to_async(streams.stream_status)(provider=provider)
    assert status["state"] == "stopped"
    assert status["running"] is False and status["desired"] is False
    assert status["stop_reason"] == "stopped by an operator"
    assert status["stopped_at"] is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["stolen", "expired"])
async def test_a_stream_that_loses_its_lease_stops_itself_at_once(aredis, how):
    await sync_to_async(sim_provider)()
    runner = _runner()
    task = asyncio.create_task(runner.run())
    await _running_status()
    if how == "stolen":
        await aredis.set(lease_key("SIM"), "thief@host:9", px=60_000)
    else:
        await aredis.delete(lease_key("SIM"))
    lost_at = time.monotonic()
    outcome = await asyncio.wait_for(task, 10)
    # Noticed at the next renewal (every TTL/3 = 0.5 s), then the feed is stopped.
    assert time.monotonic() - lost_at < 2.5
    assert outcome.reason.startswith("lease lost")
    assert runner.runtime.manager.clients == {}
    ticks = runner.runtime.engine.stats.ticks_in
    await asyncio.sleep(0.3)
    assert runner.runtime.engine.stats.ticks_in == ticks  # nothing streams any more
    if how == "stolen":
        assert await aredis.get(lease_key("SIM")) == "thief@host:9"  # the new holder keeps it
        assert await aredis.hget(status_key("SIM"), "running") == "1"  # and the loser wrote nothing


@pytest.mark.django_db(transaction=True)
async def test_a_second_runner_does_not_stream_while_the_lease_is_held(aredis):
    await sync_to_async(sim_provider)()
    first = _runner(worker_id="a@host:1")
    task = asyncio.create_task(first.run())
    await _running_status()
    outcome = await asyncio.wait_for(_runner(worker_id="b@host:2").run(), 5)
    assert outcome.started is False
    assert outcome.reason == "already running on a@host:1"
    assert await aredis.get(lease_key("SIM")) == "a@host:1"
    await aredis.set(stop_key("SIM"), "1")
    await asyncio.wait_for(task, 10)


@pytest.mark.django_db(transaction=True)
async def test_a_shutting_down_worker_hands_its_stream_over(aredis):
    await sync_to_async(sim_provider)()
    runner = _runner(node="streams@host")
    task = asyncio.create_task(runner.run())
    await _running_status()
    await sync_to_async(streams.worker_shutdown_announce)(node="streams@host")
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.reason == "worker shutting down"
    assert await aredis.get(lease_key("SIM")) is None
    assert not await aredis.exists(stop_key("SIM"))  # still desired: the watchdog restarts it elsewhere
    await sync_to_async(streams.worker_shutdown_clear)(node="streams@host")
    assert not await aredis.exists("stream:worker-stop:streams@host")


@pytest.mark.django_db(transaction=True)
async def test_a_deactivated_provider_stops_its_stream(aredis):
    provider = await sync_to_async(sim_provider)()
    task = asyncio.create_task(_runner().run())
    await _running_status()
    await Provider.objects.filter(pk=provider.pk).aupdate(is_active=False)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.reason == "provider deactivated or deleted"
    assert await aredis.get(lease_key("SIM")) is None


@pytest.mark.django_db
def test_unknown_or_inactive_providers_are_refused_before_any_lease(rdb):
    ProviderFactory(code="OFF", is_active=False)
    with pytest.raises(streams.StreamError, match=r"^Unknown provider code 'NOPE'$"):
        streams.stream_run(provider_code="NOPE")
    with pytest.raises(streams.StreamError, match="must be a provider code"):
        streams.stream_run(provider_code=42)
    with pytest.raises(streams.StreamError, match="Provider OFF is inactive"):
        streams.stream_run(provider_code="off")
    assert rdb.keys("stream:*") == []


# --- which instruments each stream serves ------------------------------------------------------------


@pytest.mark.django_db
def test_each_instrument_goes_to_one_stream_and_fails_over_to_the_next_healthy_provider(rdb):
    primary = sim_provider("P1", exchange_code="XA")
    backup = ProviderFactory(code="P2", kind=Provider.Kind.SIMULATED)
    ExchangeProviderMappingFactory(exchange=primary.exchange_mappings.get().exchange, provider=backup, priority=20)
    plan = stream_plan()
    assert len(plan.candidates) == 2

    def served(code: str, healthy: set[str]) -> set[int]:
        return set(streams.provider_stream_plan(plan=plan, provider_code=code, healthy=healthy).candidates)

    everything = set(plan.candidates)
    assert served("P1", set()) == everything
    assert served("P1", {"P2"}) == everything  # a lower-ranked provider never takes from a better one
    assert served("P2", {"P1"}) == set()  # the primary is healthy: the backup idles
    assert served("P2", set()) == everything  # the primary's stream is down: the backup serves

    # Health comes from the peers' reports: a held lease, healthy=1, and fresh.
    rdb.set(lease_key("P1"), "w:1")
    rdb.hset(status_key("P1"), mapping={"healthy": "1", "updated_at": time.time()})
    assert _healthy_streams(["P1"], fresh_s=5) == {"P1"}
    rdb.hset(status_key("P1"), "updated_at", time.time() - 60)
    assert _healthy_streams(["P1"], fresh_s=5) == set()
    rdb.hset(status_key("P1"), mapping={"healthy": "0", "updated_at": time.time()})
    assert _healthy_streams(["P1"], fresh_s=5) == set()
    rdb.hset(status_key("P1"), "healthy", "1")
    rdb.delete(lease_key("P1"))
    assert _healthy_streams(["P1"], fresh_s=5) == set()


# --- the watchdog and start/stop ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_watchdog_starts_every_lapsed_stream_once(rdb):
    sim_provider("SIM", exchange_code="XA")
    sim_provider("SIM2", exchange_code="XB")
    ProviderFactory(code="IDLE", kind=Provider.Kind.SIMULATED)  # serves no exchange
    yahoo = ProviderFactory(code="YF", kind=Provider.Kind.YAHOO)  # needs instrument mappings
    unmapped = ExchangeFactory(code="XC")
    ExchangeProviderMappingFactory(exchange=unmapped, provider=yahoo, is_primary=True)
    InstrumentFactory(exchange=unmapped, symbol="ZZZ")
    yahoo_mapped = ProviderFactory(code="YF2", kind=Provider.Kind.YAHOO)
    exchange = ExchangeFactory(code="XD")
    ExchangeProviderMappingFactory(exchange=exchange, provider=yahoo_mapped, is_primary=True)
    ProviderInstrumentMappingFactory(provider=yahoo_mapped, instrument=InstrumentFactory(exchange=exchange))
    off = sim_provider("OFF", exchange_code="XE")
    off.is_active = False
    off.save()

    assert streams.streamable_provider_codes() == ["SIM", "SIM2", "YF2"]

    rdb.set(lease_key("SIM2"), "w:1")  # running
    queue = Recorder()
    assert streams.stream_watchdog(enqueue=queue) == ["SIM", "YF2"]
    assert queue.codes == ["SIM", "YF2"]
    assert streams.stream_watchdog(enqueue=queue) == []  # already queued: no second start
    assert queue.codes == ["SIM", "YF2"]

    # A real run queues run_stream on the streams queue of the broker.
    rdb.delete(starting_key("SIM"))
    assert streams.stream_watchdog() == ["SIM"]
    message = json.loads(rdb.lpop("streams"))
    assert message["headers"]["task"] == "ingestion.run_stream"
    assert message["headers"]["argsrepr"] == "['SIM']"
    assert message["headers"]["expires"] is not None


@pytest.mark.django_db
def test_an_operator_stop_keeps_the_watchdog_away_until_a_start(rdb):
    provider = sim_provider()
    queue = Recorder()
    streams.stream_stop(provider=provider)
    assert streams.stream_watchdog(enqueue=queue) == []
    assert streams.stream_status(provider=provider)["desired"] is False

    assert streams.stream_start(provider=provider, enqueue=queue) is True
    assert queue.codes == ["SIM"]
    status = streams.stream_status(provider=provider)
    assert status["state"] == "starting" and status["desired"] is True
    assert streams.stream_start(provider=provider, enqueue=queue) is False  # queued already
    assert streams.stream_watchdog(enqueue=queue) == []
    assert queue.codes == ["SIM"]

    rdb.set(lease_key("SIM"), "w:1")
    rdb.delete(starting_key("SIM"))
    assert streams.stream_start(provider=provider, enqueue=queue) is False  # running already
    streams.stream_stop(provider=provider)
    assert streams.stream_status(provider=provider)["state"] == "stopping"


@pytest.mark.django_db
def test_the_watchdog_notes_a_stream_whose_worker_vanished(rdb):
    provider = sim_provider()
    rdb.hset(status_key("SIM"), mapping={"running": "1", "worker": "gone@host:7", "updated_at": time.time()})
    assert streams.stream_watchdog(enqueue=Recorder()) == ["SIM"]
    status = streams.stream_status(provider=provider)
    assert status["running"] is False
    assert status["last_error"] == "lease lapsed: the worker was lost"
    assert status["last_error_at"] is not None


@pytest.mark.django_db
def test_inactive_providers_cannot_be_started(rdb):
    provider = ProviderFactory(code="OFF", is_active=False)
    with pytest.raises(streams.StreamError, match="inactive"):
        streams.stream_start(provider=provider, enqueue=Recorder())
    assert rdb.keys("stream:*") == []


@pytest.mark.django_db
def test_status_is_unknown_and_start_unavailable_when_redis_is_unreachable(settings):
    provider = ProviderFactory(code="SIM")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    started = time.monotonic()
    status = streams.stream_status(provider=provider)
    assert status["state"] == "unknown"
    assert status["running"] is None
    assert "Redis" in status["error"] or "Error" in status["error"]
    with pytest.raises(streams.StreamUnavailable):
        streams.stream_start(provider=provider, enqueue=Recorder())
    with pytest.raises(streams.StreamUnavailable):
        streams.stream_stop(provider=provider)
    assert time.monotonic() - started < 5
    settings.REDIS_URL = ""
    assert streams.stream_status(provider=provider)["state"] == "unknown"
    with pytest.raises(streams.StreamUnavailable, match="stack mode"):
        streams.stream_watchdog()


# --- the admin ---------------------------------------------------------------------------------------


@pytest.fixture
def admin_client_logged_in(client, superuser):
    client.force_login(superuser)
    return client


def _report_running(rdb, code: str, worker: str = "streams@host:42") -> None:
    """What a running stream keeps in Redis (the runner writes exactly these fields)."""
    rdb.set(lease_key(code), worker, ex=30)
    now = time.time()
    rdb.hset(
        status_key(code),
        mapping={
            "running": "1",
            "worker": worker,
            "pid": "42",
            "started_at": now - 60,
            "updated_at": now,
            "ticks_per_second": "12.500",
            "ticks": "750",
            "last_tick_ms": int(now * 1000),
            "healthy": "1",
            "clients": json.dumps([{"code": code, "status": "streaming", "last_error": ""}]),
            "last_error": "ConnectionClosed: feed dropped <b>once</b>",
            "last_error_at": now - 30,
        },
    )


@pytest.mark.django_db
def test_the_provider_admin_lists_each_stream(admin_client_logged_in, rdb, django_assert_max_num_queries):
    sim_provider("SIM", exchange_code="XA")
    ProviderFactory(code="YF", kind=Provider.Kind.YAHOO)
    _report_running(rdb, "SIM")
    with django_assert_max_num_queries(12):
        page = admin_client_logged_in.get("/admin/ingestion/provider/")
    html = page.content.decode()
    assert page.status_code == 200
    for column in ("stream", "worker", "last tick", "ticks/s", "last error"):
        assert f">{column}<" in html or f">{column.capitalize()}<" in html, column
    assert "streams@host:42" in html and "12.5" in html
    assert "feed dropped &lt;b&gt;once&lt;/b&gt;" in html  # escaped
    assert "<b>once</b>" not in html
    assert html.count(">stopped<") == 1  # YF
    assert "Start stream" in html and "Stop stream" in html

    change = admin_client_logged_in.get(f"/admin/ingestion/provider/{Provider.objects.get(code='SIM').pk}/change/")
    assert change.status_code == 200
    assert "running (wanted: yes); worker streams@host:42" in change.content.decode()


@pytest.mark.django_db
def test_the_admin_actions_start_and_stop_streams(admin_client_logged_in, rdb):
    sim = sim_provider("SIM", exchange_code="XA")
    off = ProviderFactory(code="OFF", is_active=False)
    rdb.set(stop_key("SIM"), "x")
    page = admin_client_logged_in.post(
        "/admin/ingestion/provider/",
        {"action": "start_streams", "_selected_action": [sim.pk, off.pk]},
        follow=True,
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert "Stream start requested: SIM." in text
    assert "OFF: Provider OFF is inactive" in text
    assert not rdb.exists(stop_key("SIM"))
    assert rdb.exists(starting_key("SIM"))
    assert json.loads(rdb.lpop("streams"))["headers"]["argsrepr"] == "['SIM']"

    page = admin_client_logged_in.post(
        "/admin/ingestion/provider/", {"action": "stop_streams", "_selected_action": [sim.pk]}, follow=True
    )
    assert "Stream stop requested: SIM." in page.content.decode()
    assert rdb.exists(stop_key("SIM"))


@pytest.mark.django_db
def test_the_provider_admin_shows_unknown_when_redis_is_unreachable(admin_client_logged_in, settings):
    sim = ProviderFactory(code="SIM")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    page = admin_client_logged_in.get("/admin/ingestion/provider/")
    assert page.status_code == 200
    assert ">unknown<" in page.content.decode()
    change = admin_client_logged_in.get(f"/admin/ingestion/provider/{sim.pk}/change/")
    assert change.status_code == 200 and "unknown (wanted: unknown)" in change.content.decode()
    page = admin_client_logged_in.post(
        "/admin/ingestion/provider/", {"action": "stop_streams", "_selected_action": [sim.pk]}, follow=True
    )
    assert page.status_code == 200
    assert "SIM: Redis is not reachable" in page.content.decode()


# --- the API without workers (the worker-backed flow is in test_stream_faults.py) ---------------------


@pytest.mark.django_db
def test_the_api_answers_409_for_an_inactive_provider_and_503_without_redis(admin_api_client, rdb, settings):
    off = ProviderFactory(code="OFF", is_active=False)
    refused = admin_api_client.post(f"/providers/{off.pk}/start")
    assert refused.status_code == 409
    assert refused.json() == {
        "detail": "Provider OFF is inactive; activate it before starting its stream",
        "status_code": 409,
    }

    sim = ProviderFactory(code="SIM")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    for action in ("start", "stop"):
        answer = admin_api_client.post(f"/providers/{sim.pk}/{action}")
        assert answer.status_code == 503
        assert answer.json()["status_code"] == 503 and "Redis is not reachable" in answer.json()["detail"]
    status = admin_api_client.get(f"/providers/{sim.pk}/status")
    assert status.status_code == 200
    assert status.json()["state"] == "unknown" and status.json()["running"] is None
