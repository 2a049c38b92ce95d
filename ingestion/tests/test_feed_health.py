"""A feed that is connected but refuses every frame is not healthy: status, failover, failback.

The Dhan client runs against the local fake feed speaking Dhan's packet layout; the refused
window (``FEED_REFUSED_UNHEALTHY_S``, 30 s in production) is shortened for the tests.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from exchanges.tests.factories import ExchangeFactory
from ingestion.engine import Engine
from ingestion.manager import ProviderManager
from ingestion.models import Provider
from ingestion.providers.base import FeedStatus
from ingestion.providers.dhan import DhanFeedClient
from ingestion.tests.factories import (
    ExchangeProviderMappingFactory,
    ProviderFactory,
    ProviderInstrumentMappingFactory,
)
from ingestion.tests.fakes.dhan_server import FakeDhanServer, prev_close_packet, quote_packet
from ingestion.tests.test_provider_dhan import CLIENT_ID, CREDENTIALS, FAST, LTT_0915, TOKEN, sub
from instruments.tests.factories import InstrumentFactory
from marketdata.live.store.memory import MemoryTickStore

WINDOW_S = 0.6
GOOD = quote_packet("NSE_EQ", 2885, ltp=2885.5, ltq=1, ltt=LTT_0915, volume=10)
SHORT = GOOD[:30]  # a quote frame cut short: refused
ZERO_PRICE = quote_packet("NSE_EQ", 2885, ltp=0.0, ltq=1, ltt=LTT_0915, volume=10)


async def until(predicate, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling the client's state is the point
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def sending(server: FakeDhanServer, frame: bytes, every_s: float = 0.05):
    """Send ``frame`` to every connection every ``every_s`` while the block runs."""

    async def loop() -> None:
        while True:
            await server.send_to_all(frame)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def server():
    async with FakeDhanServer(token=TOKEN, client_id=CLIENT_ID) as fake:
        yield fake


@pytest.fixture
async def client(server):
    client = DhanFeedClient(
        code="DHAN",
        settings={"feed_url": server.url, "mode": "quote", **FAST},
        credentials=CREDENTIALS,
        refused_unhealthy_s=WINDOW_S,
    )
    await client.subscribe([sub(1, 2885)])
    await client.connect()
    await server.wait_for(lambda: server.subscribed_count() == 1)
    await until(lambda: client.status == FeedStatus.STREAMING)
    yield client
    await client.disconnect()


@pytest.mark.parametrize("refused", [SHORT, ZERO_PRICE], ids=["too-short", "zero-price"])
async def test_a_feed_refusing_every_frame_for_the_window_is_degraded_until_a_tick_is_accepted(server, client, refused):
    async with sending(server, refused):
        await until(lambda: client.stats.refused >= 3)
        assert client.healthy  # not yet a whole window
        await until(lambda: not client.healthy)
        status = client.status_dict()
        assert status["status"] == "degraded" == client.effective_status
        assert status["degraded_reason"].startswith("all frames refused for ")
        assert status["frames_refused"] >= 3
        assert client.status == FeedStatus.STREAMING  # the socket itself is fine

        await server.send_to_all(GOOD)  # one good tick ends it
        await until(lambda: client.stats.ticks == 1)
        assert client.healthy and client.status_dict()["status"] == "streaming"


async def test_a_quiet_feed_and_frames_without_ticks_by_design_stay_healthy(server, client):
    await asyncio.sleep(WINDOW_S * 1.5)  # nothing arrives: a quiet market
    assert client.healthy
    async with sending(server, prev_close_packet("NSE_EQ", 2885, 2880.0)):
        await asyncio.sleep(WINDOW_S * 1.5)  # previous closes carry no tick, and are not refused
    assert client.healthy and client.stats.refused == 0


async def test_refused_frames_that_stop_arriving_leave_a_quiet_healthy_feed(server, client):
    async with sending(server, SHORT):
        await until(lambda: not client.healthy)
    await until(lambda: client.healthy, within=WINDOW_S * 5)
    assert client.status_dict()["degraded_reason"] == ""


def _dhan_primary_sim_backup(feed_url: str) -> list[int]:
    exchange = ExchangeFactory(code="NSE", timezone="Asia/Kolkata")
    dhan = ProviderFactory(
        code="DHAN", kind=Provider.Kind.DHAN, settings={"feed_url": feed_url, **FAST}, credentials=CREDENTIALS
    )
    sim = ProviderFactory(
        code="SIM2",
        kind=Provider.Kind.SIMULATED,
        settings={"seed": 1, "ticks_per_second": 20, "follow_sessions": False},
    )
    ExchangeProviderMappingFactory(exchange=exchange, provider=dhan, is_primary=True, priority=10)
    ExchangeProviderMappingFactory(exchange=exchange, provider=sim, priority=20)
    instrument = InstrumentFactory(exchange=exchange, symbol="RELIANCE")
    ProviderInstrumentMappingFactory(provider=dhan, instrument=instrument, search_code="2885", segment="NSE_EQ")
    return [instrument.id]


@pytest.mark.django_db(transaction=True)
async def test_a_degraded_primary_fails_over_keeps_probing_and_fails_back_when_ticks_return(server):
    with override_settings(PROVIDER_URL_ALLOWED_HOSTS=["127.0.0.1"], FEED_REFUSED_UNHEALTHY_S=WINDOW_S):
        [iid] = await sync_to_async(_dhan_primary_sim_backup)(server.url)
        manager = ProviderManager(engine=Engine(store=MemoryTickStore()), refresh_s=3600, failover_after_s=60)
        await manager.start()
        try:
            dhan = manager.clients["DHAN"]
            await server.wait_for(lambda: server.subscribed_count() == 1)
            await until(lambda: dhan.status == FeedStatus.STREAMING)
            assert manager.assignment == {iid: "DHAN"}

            async with sending(server, SHORT):
                await until(lambda: not dhan.healthy)
                assert manager.is_down("DHAN")  # at once: the refused window was the grace period
                await manager.refresh()
                assert manager.assignment == {iid: "SIM2"}
                assert set(dhan.subscriptions) == {iid}  # kept as a probe
                await manager.refresh()
                assert manager.assignment == {iid: "SIM2"} and set(dhan.subscriptions) == {iid}
                status = {s["code"]: s for s in manager.status()}
                assert status["DHAN"]["status"] == "degraded" and status["DHAN"]["serving"] == 0

            await server.send_to_all(GOOD)
            await until(lambda: dhan.healthy and dhan.stats.ticks >= 1)
            await manager.refresh()
            assert manager.assignment == {iid: "DHAN"}
            assert manager.clients["SIM2"].subscriptions == {}
        finally:
            await manager.stop()
