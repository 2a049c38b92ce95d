"""ProviderManager over real database rows and real feed clients: routing, failover, refresh.

The manager reads the database from a worker thread (as in production), so these tests use
transactional test databases: the rows they write are committed and visible to that thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asgiref.sync import sync_to_async

from exchanges.models import Exchange
from exchanges.tests.factories import ExchangeFactory
from ingestion.engine import Engine
from ingestion.manager import ProviderManager
from ingestion.models import Provider
from ingestion.providers.base import FeedStatus
from ingestion.streaming import stream_plan
from ingestion.tests.conftest import one_worker_thread
from ingestion.tests.factories import (
    ExchangeProviderMappingFactory,
    ProviderFactory,
    ProviderInstrumentMappingFactory,
)
from instruments.models import Instrument
from instruments.tests.factories import InstrumentFactory
from marketdata.live.store.memory import MemoryTickStore
from marketdata.tests.factories import PriceHistoryDailyFactory

FAST_SIM = {"seed": 1, "ticks_per_second": 20, "tick_interval_ms": 50, "follow_sessions": False}
db = sync_to_async


async def until(predicate, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling the manager's state is the point
            await asyncio.sleep(0.01)


@pytest.fixture
async def make_manager():
    managers: list[ProviderManager] = []

    async def make(**kwargs) -> ProviderManager:
        kwargs.setdefault("refresh_s", 3600)  # the tests call refresh() themselves
        kwargs.setdefault("failover_after_s", 0.2)
        manager = ProviderManager(engine=Engine(store=MemoryTickStore()), **kwargs)
        managers.append(manager)
        async with asyncio.timeout(10):
            await manager.start()
        return manager

    yield make
    async with asyncio.timeout(10):
        for manager in managers:
            await manager.stop()


def served(manager: ProviderManager, code: str) -> set[int]:
    return {iid for iid, c in manager.assignment.items() if c == code}


def replay_file(path, symbols: list[str], seconds: int = 60):
    """``seconds`` of ticks, ten a second, cycling through ``symbols``."""
    lines = ["timestamp,symbol,price,size"]
    t0 = 1_705_312_800_000
    for i in range(seconds * 10):
        lines.append(f"{t0 + i * 100},{symbols[i % len(symbols)]},{100 + i % 13}.25,{1 + i % 5}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _exchange_with_two_providers(primary: dict, backup: dict) -> tuple[list[int], Provider, Provider]:
    exchange = ExchangeFactory(code="XNAS", timezone="America/New_York")
    ids = [InstrumentFactory(exchange=exchange, symbol=s).id for s in ("AAA", "BBB", "CCC")]
    first = ProviderFactory(**primary)
    second = ProviderFactory(**backup)
    ExchangeProviderMappingFactory(exchange=exchange, provider=first, is_primary=True, priority=10)
    ExchangeProviderMappingFactory(exchange=exchange, provider=second, priority=20)
    return ids, first, second


@pytest.mark.django_db(transaction=True)
async def test_failover_to_the_next_provider_and_failback_when_the_primary_works_again(tmp_path, make_manager):
    broken = {"path": str(tmp_path / "missing.csv"), "speed": 1, "loop": True, "rebase": True}
    ids, _, _ = await db(_exchange_with_two_providers)(
        {"code": "REPLAY", "kind": Provider.Kind.REPLAY, "settings": broken},
        {"code": "SIM2", "kind": Provider.Kind.SIMULATED, "settings": FAST_SIM},
    )
    manager = await make_manager()
    assert set(manager.clients) == {"REPLAY", "SIM2"}
    primary = manager.clients["REPLAY"]
    await until(lambda: primary.status == FeedStatus.FAILED)
    assert "replay file not found" in primary.last_error

    # Failover: the failed primary's instruments move to the next candidate.
    await manager.refresh()
    assert served(manager, "SIM2") == set(ids)
    assert manager.engine.assigned == dict.fromkeys(ids, "SIM2")
    assert set(manager.clients["SIM2"].subscriptions) == set(ids)
    assert manager.clients["REPLAY"].subscriptions == {}
    await until(lambda: all(iid in manager.engine.quotes for iid in ids))
    assert {manager.engine.quotes[iid].provider for iid in ids} == {"SIM2"}

    # Failback: the operator fixes the primary's settings; the refresh restarts it with them.
    good = {**broken, "path": str(replay_file(tmp_path / "feed.csv", ["AAA", "XNAS:BBB", "CCC"]))}
    await db(Provider.objects.filter(code="REPLAY").update)(settings=good)
    await manager.refresh()
    restarted = manager.clients["REPLAY"]
    assert restarted is not primary and restarted.settings["path"] == good["path"]
    assert primary.status == FeedStatus.STOPPED
    assert served(manager, "REPLAY") == set(ids)
    assert manager.engine.assigned == dict.fromkeys(ids, "REPLAY")
    assert manager.clients["SIM2"].subscriptions == {}
    await until(lambda: restarted.healthy)
    await until(lambda: {manager.engine.quotes[iid].provider for iid in ids} == {"REPLAY"})
    assert manager.status()[0]["serving"] + manager.status()[1]["serving"] == 3


@pytest.mark.django_db(transaction=True)
async def test_one_provider_serves_an_instrument_and_the_engine_drops_the_others_ticks(tmp_path, make_manager):
    ids, _, _ = await db(_exchange_with_two_providers)(
        {"code": "SIM", "kind": Provider.Kind.SIMULATED, "settings": FAST_SIM},
        {"code": "SIM2", "kind": Provider.Kind.SIMULATED, "settings": {**FAST_SIM, "seed": 2}},
    )
    manager = await make_manager()
    assert served(manager, "SIM") == set(ids) and manager.clients["SIM2"].subscriptions == {}
    # A provider that keeps pushing instruments it no longer serves (as real feeds do for a while).
    backup = manager.clients["SIM2"]
    await backup.subscribe(manager.clients["SIM"].subscriptions.values())
    await until(lambda: manager.engine.stats.ticks_other_provider >= 10)
    assert {q.provider for q in manager.engine.quotes.values()} == {"SIM"}
    assert backup.stats.ticks >= 10


@pytest.mark.django_db(transaction=True)
async def test_a_provider_that_stops_streaming_is_failed_over_only_after_the_grace_period(make_manager):
    ids, _, _ = await db(_exchange_with_two_providers)(
        {"code": "SIM", "kind": Provider.Kind.SIMULATED, "settings": FAST_SIM},
        {"code": "SIM2", "kind": Provider.Kind.SIMULATED, "settings": FAST_SIM},
    )
    manager = await make_manager(failover_after_s=0.3)
    primary = manager.clients["SIM"]
    await until(lambda: primary.healthy)
    await primary.disconnect()  # the connection dropped; the client is not streaming
    await manager.refresh()
    assert served(manager, "SIM") == set(ids)  # a short outage moves nothing
    await asyncio.sleep(0.35)
    await manager.refresh()
    assert served(manager, "SIM2") == set(ids)
    await primary.connect()  # it reconnected
    await until(lambda: primary.healthy)
    await manager.refresh()
    assert served(manager, "SIM") == set(ids)
    assert set(primary.subscriptions) == set(ids) and manager.clients["SIM2"].subscriptions == {}


@pytest.mark.django_db(transaction=True)
async def test_a_misconfigured_provider_does_not_stop_the_others(tmp_path, make_manager):
    ids, _, _ = await db(_exchange_with_two_providers)(
        {"code": "REPLAY", "kind": Provider.Kind.REPLAY, "settings": {"speed": "fast"}},
        {"code": "SIM2", "kind": Provider.Kind.SIMULATED, "settings": FAST_SIM},
    )
    manager = await make_manager()
    assert "REPLAY" not in manager.clients
    assert served(manager, "SIM2") == set(ids)
    await manager.refresh()
    assert served(manager, "SIM2") == set(ids)
    # Once the settings are fixed, the provider starts and takes its instruments back.
    good = {"path": str(replay_file(tmp_path / "feed.csv", ["AAA", "BBB", "CCC"])), "speed": 1, "loop": True}
    await db(Provider.objects.filter(code="REPLAY").update)(settings=good)
    await manager.refresh()
    assert served(manager, "REPLAY") == set(ids)


def _two_exchanges() -> dict:
    sim = ProviderFactory(code="SIM", kind=Provider.Kind.SIMULATED, settings=FAST_SIM)
    ex1 = ExchangeFactory(code="XNAS", timezone="America/New_York")
    ex2 = ExchangeFactory(code="XNSE", timezone="Asia/Kolkata")
    for exchange in (ex1, ex2):
        ExchangeProviderMappingFactory(exchange=exchange, provider=sim, is_primary=True, priority=10)
    names = {"A": ex1, "B": ex1, "C": ex1, "D": ex2}
    return {name: InstrumentFactory(exchange=exchange, symbol=name).id for name, exchange in names.items()}


def _change_the_database(ids: dict) -> int:
    Instrument.objects.filter(id=ids["A"]).update(is_active=False)
    Instrument.objects.filter(id=ids["B"]).update(record_data=False)
    Exchange.objects.filter(code="XNSE").update(is_active=False)
    new = InstrumentFactory(exchange=Exchange.objects.get(code="XNAS"), symbol="E", tick_size="0.05")
    ProviderInstrumentMappingFactory(provider=Provider.objects.get(code="SIM"), instrument=new, search_code="E-SIM")
    PriceHistoryDailyFactory(instrument=new, date=dt.date(2024, 1, 2), close=777.0)
    PriceHistoryDailyFactory(instrument=new, date=dt.date(2024, 1, 1), close=1.0)
    return new.id


@pytest.mark.django_db(transaction=True)
async def test_subscription_changes_in_the_database_reach_the_clients(make_manager):
    ids = await db(_two_exchanges)()
    manager = await make_manager()
    sim = manager.clients["SIM"]
    assert set(sim.subscriptions) == set(ids.values())
    assert manager.engine.meta[ids["D"]].timezone == "Asia/Kolkata"

    new_id = await db(_change_the_database)(ids)
    await manager.refresh()
    assert manager.clients["SIM"] is sim  # same settings: the client keeps running
    assert set(sim.subscriptions) == {ids["C"], new_id}
    assert manager.engine.assigned == {ids["C"]: "SIM", new_id: "SIM"}
    sub = sim.subscriptions[new_id]
    assert (sub.symbol, sub.exchange, sub.search_code, sub.tick_size) == ("E", "XNAS", "E-SIM", 0.05)
    assert sub.reference_price == 777.0  # the latest daily close
    meta = manager.engine.meta[new_id]
    assert (meta.symbol, meta.exchange, meta.timezone) == ("E", "XNAS", "America/New_York")
    await until(lambda: new_id in manager.engine.quotes)
    assert abs(manager.engine.quotes[new_id].last - 777.0) < 777.0 * 0.02

    await db(Instrument.objects.filter(id=ids["C"]).update)(blacklisted=True)
    await db(Instrument.objects.filter(id=new_id).update)(delisted=True)
    await manager.refresh()
    assert manager.assignment == {} and manager.engine.assigned == {}
    assert manager.clients == {} and sim.status == FeedStatus.STOPPED  # nothing left to stream


@pytest.mark.django_db(transaction=True)
async def test_changed_provider_settings_restart_the_client_with_them(make_manager):
    ids = await db(_two_exchanges)()
    manager = await make_manager()
    old = manager.clients["SIM"]
    await db(Provider.objects.filter(code="SIM").update)(settings={**FAST_SIM, "volatility": 0.9, "seed": 5})
    await manager.refresh()
    new = manager.clients["SIM"]
    assert new is not old and old.status == FeedStatus.STOPPED
    assert new.volatility == 0.9 and new.settings["seed"] == 5
    assert set(new.subscriptions) == set(ids.values())
    assert manager.engine.assigned == dict.fromkeys(ids.values(), "SIM")
    await until(lambda: new.stats.ticks > 0)

    await db(Provider.objects.filter(code="SIM").update)(is_active=False)
    await manager.refresh()
    assert manager.clients == {} and new.status == FeedStatus.STOPPED
    assert manager.assignment == {} and manager.engine.assigned == {}


@pytest.mark.django_db(transaction=True)
async def test_refresh_recovers_after_the_database_connection_is_lost(make_manager, restart_database):
    one_worker_thread()
    ids = await db(_two_exchanges)()
    manager = await make_manager()
    assert await restart_database() >= 1
    await db(Instrument.objects.filter(id=ids["A"]).update)(is_active=False)
    async with asyncio.timeout(10):
        await manager.refresh()
    assert ids["A"] not in manager.clients["SIM"].subscriptions


@pytest.mark.django_db
def test_the_plan_ranks_the_primary_first_and_needs_mappings_for_real_feeds():
    exchange = ExchangeFactory(code="XNSE", timezone="Asia/Kolkata")
    mapped, unmapped = InstrumentFactory(exchange=exchange), InstrumentFactory(exchange=exchange)
    dhan = ProviderFactory(code="DHAN", kind=Provider.Kind.DHAN, credentials={"client_id": "1", "access_token": "t"})
    yahoo = ProviderFactory(code="YF", kind=Provider.Kind.YAHOO)
    sim = ProviderFactory(code="SIM", kind=Provider.Kind.SIMULATED)
    off = ProviderFactory(code="OFF", kind=Provider.Kind.SIMULATED, is_active=False)
    ExchangeProviderMappingFactory(exchange=exchange, provider=sim, priority=1000)
    ExchangeProviderMappingFactory(exchange=exchange, provider=yahoo, priority=20)
    ExchangeProviderMappingFactory(exchange=exchange, provider=dhan, is_primary=True, priority=50)
    ExchangeProviderMappingFactory(exchange=exchange, provider=off, priority=1)
    ProviderInstrumentMappingFactory(provider=dhan, instrument=mapped, search_code="2885", segment="NSE_EQ")
    ProviderInstrumentMappingFactory(provider=yahoo, instrument=mapped, search_code="RELIANCE.NS")
    ProviderInstrumentMappingFactory(provider=yahoo, instrument=unmapped, search_code="X.NS", is_active=False)

    plan = stream_plan()
    assert set(plan.providers) == {"DHAN", "YF", "SIM"}
    assert [code for code, _ in plan.candidates[mapped.id]] == ["DHAN", "YF", "SIM"]
    assert [code for code, _ in plan.candidates[unmapped.id]] == ["SIM"]  # no (active) mapping
    dhan_sub = plan.candidates[mapped.id][0][1]
    assert (dhan_sub.search_code, dhan_sub.segment, dhan_sub.exchange) == ("2885", "NSE_EQ", "XNSE")
    assert plan.candidates[mapped.id][1][1].search_code == "RELIANCE.NS"
    assert plan.providers["DHAN"].credentials == {"client_id": "1", "access_token": "t"}
    assert plan.timezones[mapped.id] == "Asia/Kolkata"

    only = stream_plan(provider_codes=["YF"])
    assert set(only.providers) == {"YF"} and set(only.candidates) == {mapped.id}


@pytest.mark.django_db(transaction=True)
async def test_a_failed_client_is_retried_after_a_while_without_a_settings_change(tmp_path, make_manager):
    missing = tmp_path / "later.csv"
    broken = {"path": str(missing), "speed": 0, "loop": True, "rebase": True}
    ids, _, _ = await db(_exchange_with_two_providers)(
        {"code": "REPLAY", "kind": Provider.Kind.REPLAY, "settings": broken},
        {"code": "SIM2", "kind": Provider.Kind.SIMULATED, "settings": FAST_SIM},
    )
    manager = await make_manager(retry_failed_after_s=0.3)
    first = manager.clients["REPLAY"]
    await until(lambda: first.status == FeedStatus.FAILED)
    await manager.refresh()  # too soon: same failed client, instruments on SIM2
    assert manager.clients["REPLAY"] is first and served(manager, "SIM2") == set(ids)
    replay_file(missing, ["AAA", "XNAS:BBB", "CCC"])  # the cause goes away outside the database
    await asyncio.sleep(0.35)
    await manager.refresh()
    retried = manager.clients["REPLAY"]
    assert retried is not first
    await until(lambda: retried.healthy)
    await manager.refresh()
    assert served(manager, "REPLAY") == set(ids)
