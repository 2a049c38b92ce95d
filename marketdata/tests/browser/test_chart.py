"""The dashboard's chart: history, live bars from the feed, intervals, the exchange's time axis."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from accounts.watchlists import watchlist_default_ensure, watchlist_item_add
from exchanges.models import Exchange
from ingestion.engine import Engine, InstrumentMeta
from instruments.models import InstrumentType
from instruments.tests.factories import InstrumentFactory
from marketdata.live.protocol import ChannelLayerPublisher
from marketdata.live.types import Tick
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday
from marketdata.tests.browser.conftest import LAYER_PREFIX, redis_url, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NEW_YORK = ZoneInfo("America/New_York")
HISTORY_MINUTES = 90


def _minute_bars(instrument, *, last: dt.datetime, count: int) -> list[dict]:
    """``count`` stored 1-minute bars ending at ``last`` (a random walk with round prices)."""
    rng = random.Random(11)
    price = 50.0
    bars = []
    for i in range(count):
        at = last - dt.timedelta(minutes=count - 1 - i)
        close = round(price + rng.uniform(-0.4, 0.4), 2)
        bars.append(
            {
                "timestamp": at,
                "open": round(price, 2),
                "high": round(max(price, close) + rng.uniform(0, 0.2), 2),
                "low": round(min(price, close) - rng.uniform(0, 0.2), 2),
                "close": close,
                "volume": rng.randint(100, 5000),
            }
        )
        price = close
    PriceHistoryIntraday.objects.bulk_create(
        PriceHistoryIntraday(instrument=instrument, interval="1m", **bar) for bar in bars
    )
    return bars


def _fold(minutes: list[dict], seconds: int) -> list[tuple]:
    """Bars of ``seconds`` (UTC-aligned, as a 09:30 open aligns 5-minute bars) as (ts, o, h, l, c, v)."""
    buckets: dict[int, list[dict]] = {}
    for bar in minutes:
        ts = int(bar["timestamp"].timestamp())
        buckets.setdefault(ts - ts % seconds, []).append(bar)
    return [
        (
            ts,
            group[0]["open"],
            max(b["high"] for b in group),
            min(b["low"] for b in group),
            group[-1]["close"],
            sum(b["volume"] for b in group),
        )
        for ts, group in sorted(buckets.items())
    ]


def _publish_ticks(instrument, ticks: list[tuple[dt.datetime, float]]) -> None:
    """Feed ticks through a real engine into the test Redis: the server's /ws sees them as live data."""

    async def run() -> None:
        from channels_redis.pubsub import RedisPubSubChannelLayer

        from marketdata.live.store.redis import RedisTickStore

        layer = RedisPubSubChannelLayer(hosts=[redis_url()], prefix=LAYER_PREFIX)
        store = RedisTickStore(redis_url())
        engine = Engine(store=store, publisher=ChannelLayerPublisher(layer))
        engine.set_instruments([InstrumentMeta(instrument.pk, instrument.symbol, "NASDAQ", "America/New_York")])
        await engine.restore()
        for at, price in ticks:
            ts = int(at.timestamp() * 1000)
            await engine.process([Tick(instrument_id=instrument.pk, provider="SIM", ts=ts, price=price, size=100)])
        await store.close()
        await layer.flush()

    failures: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    # Playwright's sync API keeps an event loop running in this thread: asyncio.run needs another.
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(15)
    assert not thread.is_alive() and failures == [], failures


def _chart(page) -> dict:
    return page.evaluate(
        """() => ({
            interval: marketChart.interval,
            loads: marketChart.loads,
            source: marketChart.source,
            bars: marketChart.bars.map(b => [b.utc, b.open, b.high, b.low, b.close, b.volume]),
            candles: marketChart.series.data().map(d => [d.time, d.open, d.high, d.low, d.close]),
            volumes: marketChart.volume.data().map(d => d.value),
        })"""
    )


def _switch(page, interval: str, loads: int) -> dict:
    page.click(f"#chart-intervals button[data-interval='{interval}']")
    expect(page.locator(f"#chart-intervals button[data-interval='{interval}']")).to_have_attribute(
        "aria-pressed", "true"
    )
    wait_for(lambda: page.evaluate("marketChart.loads") >= loads, 10, f"the {interval} chart to load")
    return _chart(page)


def test_chart_history_live_bars_and_intervals(alice, browsing):
    nasdaq = Exchange.objects.get(code="NASDAQ")
    testx = InstrumentFactory(
        exchange=nasdaq,
        symbol="TESTX",
        name="Test Corp",
        instrument_type=InstrumentType.objects.get(code="EQ"),
        tick_size=Decimal("0.01"),
        record_data=False,  # the simulator leaves it alone: every live bar below is ours
    )
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    history = _minute_bars(testx, last=minute - dt.timedelta(minutes=3), count=HISTORY_MINUTES)
    today = minute.astimezone(NEW_YORK).date()
    days = [today - dt.timedelta(days=n) for n in range(40, 0, -1)]
    PriceHistoryDaily.objects.bulk_create(
        PriceHistoryDaily(instrument=testx, date=day, open=50, high=52, low=49, close=51, volume=10_000 + i)
        for i, day in enumerate(days)
    )
    default = watchlist_default_ensure(user=alice)
    watchlist_item_add(watchlist=default, instrument=testx)

    page = browsing.sign_in(alice)
    page.locator("tr[data-channel='NASDAQ:TESTX']").click()
    wait_for(lambda: page.evaluate("window.marketChart && window.marketChart.loads") == 1, 10, "the chart to load")
    expect(page.locator("#chart-title")).to_have_text("TESTX · NASDAQ")

    # 1m: the stored bars, candles and volumes, on New York's wall clock.
    chart = _chart(page)
    assert chart["interval"] == "1m"
    expected = [
        [int(b["timestamp"].timestamp()), b["open"], b["high"], b["low"], b["close"], b["volume"]] for b in history
    ]
    assert chart["bars"] == expected
    assert [c[1:] for c in chart["candles"]] == [e[1:5] for e in expected]
    assert chart["volumes"] == [e[5] for e in expected]
    for (utc, *_), (shown, *_) in zip(chart["bars"], chart["candles"], strict=True):
        offset = dt.datetime.fromtimestamp(utc, dt.UTC).astimezone(NEW_YORK).utcoffset().total_seconds()
        assert shown - utc == offset

    # Live: a tick in the next minute makes a new bar; one in the minute after closes it and opens another.
    # (Only once the server confirmed the chart's live channel: a tick published before would be missed.)
    wait_for(
        lambda: page.evaluate("marketChart.feed.confirmed.has('NASDAQ:TESTX@1m')"), 10, "the live channel confirmed"
    )
    base = history[-1]["close"]
    p1, p2, p3 = round(base + 0.23, 2), round(base + 0.5, 2), round(base + 0.1, 2)
    first_live = minute - dt.timedelta(minutes=2)
    _publish_ticks(testx, [(first_live + dt.timedelta(seconds=5), p1)])
    wait_for(lambda: len(page.evaluate("marketChart.series.data()")) == HISTORY_MINUTES + 1, 5, "a live bar")
    second_live = minute - dt.timedelta(minutes=1)
    _publish_ticks(testx, [(first_live + dt.timedelta(seconds=30), p2), (second_live + dt.timedelta(seconds=1), p3)])
    wait_for(lambda: len(page.evaluate("marketChart.series.data()")) == HISTORY_MINUTES + 2, 5, "a second live bar")
    live_minutes = [
        {"timestamp": first_live, "open": p1, "high": p2, "low": p1, "close": p2, "volume": 200},
        {"timestamp": second_live, "open": p3, "high": p3, "low": p3, "close": p3, "volume": 100},
    ]
    chart = _chart(page)
    assert chart["bars"][-2:] == [
        [int(b["timestamp"].timestamp()), b["open"], b["high"], b["low"], b["close"], b["volume"]] for b in live_minutes
    ]
    expect(page.locator("tr[data-channel='NASDAQ:TESTX'] td[data-field='last']")).to_have_text(f"${p3:.2f}")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "dashboard-wide")

    # 5m: buckets of the stored and the live minutes, exactly.
    chart = _switch(page, "5m", 2)
    assert chart["interval"] == "5m" and "interval=5m" in chart["source"]
    assert [tuple(bar) for bar in chart["bars"]] == _fold(history + live_minutes, 300)
    assert len(chart["candles"]) == len(chart["bars"]) < HISTORY_MINUTES / 4

    # 1h: what the API answers, aligned to the 09:30 open (hh:30 in New York).
    chart = _switch(page, "1h", 3)
    api = page.evaluate("async () => (await (await fetch(marketChart.source)).json()).results")
    api_times = [int(dt.datetime.fromisoformat(row["timestamp"]).timestamp()) for row in api]
    assert [bar[0] for bar in chart["bars"]] == api_times
    assert all(dt.datetime.fromtimestamp(bar[0], NEW_YORK).minute == 30 for bar in chart["bars"])
    assert sum(bar[5] for bar in chart["bars"]) == sum(b["volume"] for b in history) + 300

    # 1D: trading dates from /marketdata/daily.
    chart = _switch(page, "1D", 4)
    assert [bar[0] for bar in chart["bars"]] == [day.isoformat() for day in days]
    assert [c[0] for c in chart["candles"]] == [day.isoformat() for day in days]
    assert chart["volumes"] == [10_000 + i for i in range(len(days))]

    # The choice is remembered for the next visit.
    page.reload()
    page.locator("tr[data-channel='NASDAQ:TESTX']").click()
    wait_for(lambda: page.evaluate("window.marketChart && window.marketChart.loads") == 1, 10, "the chart again")
    assert page.evaluate("marketChart.interval") == "1D"
