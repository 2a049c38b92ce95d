"""The simulator (SIM): reproducible random walks that look like a real feed."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest

from ingestion.providers.base import FeedStatus, Subscription
from ingestion.providers.simulated import DEFAULT_PRICE, SimulatedFeedClient
from ingestion.ticks import Tick

T0 = 1_705_312_800_000


def sub(iid: int = 1, price: float | None = 1420.0, tick_size: float = 0.05, exchange: str = "NSE") -> Subscription:
    return Subscription(
        instrument_id=iid, symbol=f"S{iid}", exchange=exchange, reference_price=price, tick_size=tick_size
    )


def walk(client: SimulatedFeedClient, subscription: Subscription, n: int, dt: float = 1.0) -> list[Tick]:
    return [client.step(subscription, dt, T0 + i * 1000) for i in range(n)]


def on_grid(value: float, tick_size: float) -> bool:
    return math.isclose(value / tick_size, round(value / tick_size), abs_tol=1e-6)


async def collect(client: SimulatedFeedClient, seconds: float) -> list[Tick]:
    """Everything the client emits in ``seconds`` of wall time."""
    out: list[Tick] = []
    deadline = time.monotonic() + seconds
    async with asyncio.timeout(seconds + 5):
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    out.extend(await client.next_batch())
            except TimeoutError:
                break
    return out


async def running(client: SimulatedFeedClient, *subs: Subscription, seconds: float) -> list[Tick]:
    await client.subscribe(subs)
    await client.connect()
    try:
        return await collect(client, seconds)
    finally:
        async with asyncio.timeout(5):
            await client.disconnect()


def test_the_same_seed_gives_the_same_sequence_and_another_seed_does_not():
    a = SimulatedFeedClient(code="SIM", settings={"seed": 42})
    b = SimulatedFeedClient(code="SIM", settings={"seed": 42})
    c = SimulatedFeedClient(code="SIM", settings={"seed": 43})
    first, second, third = (walk(x, sub(), 500) for x in (a, b, c))
    assert first == second
    assert [t.price for t in first] != [t.price for t in third]


def test_a_walk_keeps_price_volume_and_session_fields_consistent():
    client = SimulatedFeedClient(code="SIM", settings={"seed": 7, "volatility": 3.0})
    s = sub(price=1420.0, tick_size=0.05)
    ticks = walk(client, s, 2000, dt=60.0)
    prices = [t.price for t in ticks]
    assert len(set(prices)) > 100  # it moves
    for t in ticks:
        assert t.price > 0 and on_grid(t.price, 0.05)
        assert t.bid < t.price < t.ask
        assert on_grid(t.bid, 0.05) and on_grid(t.ask, 0.05)
        assert t.size >= 1 and t.provider == "SIM" and t.instrument_id == 1
        assert t.day_open == 1420.0 and t.prev_close == 1420.0
    volumes = [t.day_volume for t in ticks]
    assert all(later > earlier for earlier, later in itertools.pairwise(volumes))
    assert volumes[0] == ticks[0].size
    assert all(t.day_volume - p.day_volume == t.size for p, t in itertools.pairwise(ticks))
    # The session's high and low are those of the path so far, the open included.
    for i, t in enumerate(ticks):
        assert t.day_high == max([1420.0, *prices[: i + 1]])
        assert t.day_low == min([1420.0, *prices[: i + 1]])


def test_a_penny_stock_never_reaches_zero_and_its_bid_stays_positive():
    client = SimulatedFeedClient(code="SIM", settings={"seed": 3, "volatility": 50.0})
    for t in walk(client, sub(price=0.05, tick_size=0.01), 3000, dt=3600.0):
        assert t.price > 0 and on_grid(t.price, 0.01)
        assert 0 < t.bid < t.price < t.ask


def test_the_walk_starts_from_the_reference_price():
    client = SimulatedFeedClient(code="SIM", settings={"seed": 1})
    first = client.step(sub(price=2500.0, tick_size=0.05), 0.5, T0)
    assert abs(first.price - 2500.0) / 2500.0 < 0.01
    assert first.day_open == first.prev_close == 2500.0
    unknown = client.step(sub(iid=2, price=None, tick_size=0.01), 0.5, T0)
    assert abs(unknown.price - DEFAULT_PRICE) / DEFAULT_PRICE < 0.01


async def test_the_tick_rate_is_roughly_as_configured():
    subs = [sub(i) for i in (1, 2, 3)]
    # The rate above 1 / tick interval: the client must not cap it at 4 ticks/s.
    client = SimulatedFeedClient(code="SIM", settings={"seed": 5, "ticks_per_second": 20, "tick_interval_ms": 250})
    ticks = await running(client, *subs, seconds=1.5)
    expected = 20 * 3 * 1.5
    assert 0.5 * expected <= len(ticks) <= 1.5 * expected, len(ticks)
    assert {t.instrument_id for t in ticks} == {1, 2, 3}
    assert client.status == FeedStatus.STOPPED and client.stats.ticks == len(ticks)


async def test_the_default_rate_is_about_two_ticks_per_second():
    client = SimulatedFeedClient(code="SIM", settings={"seed": 11})
    ticks = await running(client, *[sub(i) for i in range(1, 11)], seconds=1.5)
    expected = 2 * 10 * 1.5
    assert 0.5 * expected <= len(ticks) <= 1.5 * expected, len(ticks)


async def test_streamed_ticks_carry_wall_clock_times_and_follow_the_walk():
    client = SimulatedFeedClient(code="SIM", settings={"seed": 2, "ticks_per_second": 40, "tick_interval_ms": 25})
    before = int(time.time() * 1000)
    ticks = await running(client, sub(1, price=812.5), seconds=0.5)
    after = int(time.time() * 1000)
    assert ticks and all(before <= t.ts <= after for t in ticks)
    assert [t.ts for t in ticks] == sorted(t.ts for t in ticks)
    assert abs(ticks[0].price - 812.5) / 812.5 < 0.01
    volumes = [t.day_volume for t in ticks]
    assert volumes == sorted(set(volumes))


async def test_follow_sessions_emits_nothing_while_the_exchange_is_closed():
    calls: list[str] = []

    async def closed(exchange: str) -> bool:
        calls.append(exchange)
        return False

    settings = {"seed": 4, "ticks_per_second": 50, "tick_interval_ms": 20, "follow_sessions": True}
    client = SimulatedFeedClient(code="SIM", settings=settings, session_check=closed)
    ticks = await running(client, sub(1, exchange="NSE"), sub(2, exchange="NSE"), seconds=0.5)
    assert ticks == []
    assert client.stats.ticks == 0
    # The answer is cached per exchange rather than asked for on every tick.
    assert calls == ["NSE"]


async def test_follow_sessions_ticks_only_the_open_exchanges():
    async def only_nasdaq(exchange: str) -> bool:
        return exchange == "NASDAQ"

    settings = {"seed": 4, "ticks_per_second": 50, "tick_interval_ms": 20, "follow_sessions": True}
    client = SimulatedFeedClient(code="SIM", settings=settings, session_check=only_nasdaq)
    ticks = await running(client, sub(1, exchange="NSE"), sub(2, exchange="NASDAQ"), seconds=0.5)
    assert ticks and {t.instrument_id for t in ticks} == {2}


async def test_a_failing_session_check_does_not_end_the_feed():
    async def unreachable(exchange: str) -> bool:
        raise ConnectionError("database is restarting")

    settings = {"seed": 4, "ticks_per_second": 50, "tick_interval_ms": 20, "follow_sessions": True}
    client = SimulatedFeedClient(code="SIM", settings=settings, session_check=unreachable)
    ticks = await running(client, sub(1), seconds=0.3)
    assert ticks and client.last_error == ""


async def test_without_follow_sessions_the_session_check_is_not_consulted():
    async def closed(exchange: str) -> bool:
        raise AssertionError("must not be called")

    client = SimulatedFeedClient(
        code="SIM",
        settings={"seed": 4, "ticks_per_second": 50, "tick_interval_ms": 20, "follow_sessions": False},
        session_check=closed,
    )
    ticks = await running(client, sub(1), seconds=0.3)
    assert ticks and client.status == FeedStatus.STOPPED and client.last_error == ""


async def test_subscription_changes_take_effect_while_streaming():
    client = SimulatedFeedClient(code="SIM", settings={"seed": 9, "ticks_per_second": 50, "tick_interval_ms": 20})
    await client.subscribe([sub(1)])
    await client.connect()
    try:
        assert {t.instrument_id for t in await collect(client, 0.3)} == {1}
        await client.subscribe([sub(2)])
        await client.unsubscribe([1])
        client.get_nowait_batch(100_000)  # what was queued before the change
        assert {t.instrument_id for t in await collect(client, 0.3)} == {2}
        assert client.status == FeedStatus.STREAMING and client.healthy
    finally:
        async with asyncio.timeout(5):
            await client.disconnect()
    assert client.status == FeedStatus.STOPPED and client._task is None


async def test_disconnect_does_not_swallow_a_cancellation_aimed_at_its_caller():
    client = SimulatedFeedClient(code="SIM", settings={"seed": 1})
    await client.connect()

    async def stop_and_then_continue():
        await client.disconnect()
        await asyncio.sleep(10)  # must never be reached once cancelled

    task = asyncio.create_task(stop_and_then_continue())
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(2):
        with pytest.raises(asyncio.CancelledError):
            await task
