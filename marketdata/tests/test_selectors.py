"""Selectors: symbol lookup, interval aggregation (SQL and Python), live-bar merge, the query plan."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections

from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory
from marketdata.models import PriceHistoryIntraday
from marketdata.selectors import (
    AmbiguousSymbolError,
    InstrumentNotFoundError,
    bars_aggregate,
    bin_origin,
    daily_bars,
    instrument_for_symbol,
    intraday_aggregate_sql,
    intraday_bars,
)
from marketdata.tests.conftest import session_minutes
from marketdata.tests.factories import PriceHistoryDailyFactory, PriceHistoryIntradayFactory
from marketdata.tests.reference import pandas_resample

IST = ZoneInfo("Asia/Kolkata")
UTC = dt.UTC
pytestmark = pytest.mark.django_db


# --- instrument lookup -----------------------------------------------------------------------


def test_symbol_alone_finds_the_only_listing(aapl):
    assert instrument_for_symbol(symbol="AAPL") == aapl


def test_exchange_prefix_and_parameter_forms(aapl, reliance_nse, reliance_bse):
    assert instrument_for_symbol(symbol="NASDAQ:AAPL") == aapl
    assert instrument_for_symbol(symbol="RELIANCE", exchange="NSE") == reliance_nse
    assert instrument_for_symbol(symbol="BSE:RELIANCE") == reliance_bse
    assert instrument_for_symbol(symbol="reliance", exchange="bse") == reliance_bse
    assert instrument_for_symbol(symbol="BSE:RELIANCE", exchange="BSE") == reliance_bse


def test_symbol_on_several_exchanges_needs_the_exchange(reliance_nse, reliance_bse):
    with pytest.raises(AmbiguousSymbolError) as info:
        instrument_for_symbol(symbol="RELIANCE")
    assert info.value.exchanges == ["BSE", "NSE"]
    assert "BSE" in str(info.value)
    assert "NSE" in str(info.value)


def test_a_symbol_containing_a_colon_is_not_split_unless_the_prefix_is_an_exchange(nse):
    odd = InstrumentFactory(symbol="M&M:X", exchange=nse)
    assert instrument_for_symbol(symbol="M&M:X") == odd
    assert instrument_for_symbol(symbol="NSE:M&M:X") == odd


@pytest.mark.parametrize(
    ("symbol", "exchange"), [("MSFT", None), ("AAPL", "NSE"), ("AAPL", "NOPE"), ("NOPE:AAPL", "NOPE")]
)
def test_unknown_symbol_or_exchange(aapl, nse, symbol, exchange):
    with pytest.raises(InstrumentNotFoundError):
        instrument_for_symbol(symbol=symbol, exchange=exchange)


def test_inactive_instruments_are_not_found(aapl):
    aapl.is_active = False
    aapl.save()
    with pytest.raises(InstrumentNotFoundError):
        instrument_for_symbol(symbol="AAPL")


# --- aggregation -----------------------------------------------------------------------------


def test_origin_is_the_session_open_in_the_exchange_zone(reliance_nse, aapl):
    start = dt.datetime(2024, 1, 15, tzinfo=IST).astimezone(UTC)
    assert bin_origin(exchange=reliance_nse.exchange, start=start) == dt.datetime(2024, 1, 14, 3, 45, tzinfo=UTC)
    # New York in summer: 09:30 EDT is 13:30 UTC.
    summer = dt.datetime(2024, 7, 2, 12, tzinfo=UTC)
    assert bin_origin(exchange=aapl.exchange, start=summer) == dt.datetime(2024, 7, 1, 13, 30, tzinfo=UTC)
    crypto = ExchangeFactory(code="CRYPTO", is_open_24_hours=True, market_open=None, market_close=None)
    assert bin_origin(exchange=crypto, start=summer) == dt.datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("interval", ["5m", "15m", "30m", "1h"])
def test_python_aggregator_matches_pandas(reliance_nse, interval):
    bars = session_minutes(reliance_nse, day=dt.date(2024, 1, 15), rng=random.Random(7), save=False)
    origin = dt.datetime(2024, 1, 15, 9, 15, tzinfo=IST)
    stride = {"5m": 5, "15m": 15, "30m": 30, "1h": 60}[interval]
    got = list(bars_aggregate(bars, stride=dt.timedelta(minutes=stride), origin=origin))
    assert got == pandas_resample(bars, interval=interval, origin=origin)


@pytest.mark.parametrize("interval", ["5m", "15m", "30m", "1h"])
def test_sql_and_python_paths_match_pandas_over_two_sessions(reliance_nse, monkeypatch, interval):
    rng = random.Random(interval)
    bars = session_minutes(reliance_nse, day=dt.date(2024, 1, 15), rng=rng)
    bars += session_minutes(reliance_nse, day=dt.date(2024, 1, 16), rng=rng)
    start = dt.datetime(2024, 1, 15, tzinfo=IST).astimezone(UTC)
    end = dt.datetime(2024, 1, 17, tzinfo=IST).astimezone(UTC)
    expected = pandas_resample(bars, interval=interval, origin=dt.datetime(2024, 1, 15, 9, 15, tzinfo=IST))

    sql_path = intraday_bars(instrument=reliance_nse, start=start, end=end, interval=interval, limit=10_000)
    assert sql_path == expected
    # NSE hour bars start at the 09:15 IST open, not on the UTC hour.
    if interval == "1h":
        assert [b["timestamp"].astimezone(IST).time() for b in sql_path[:7]] == [dt.time(h, 15) for h in range(9, 16)]

    # The embedded mode (SQLite) folds the same stored rows in Python; force that branch here.
    monkeypatch.setattr(connections["default"], "vendor", "sqlite")
    python_path = intraday_bars(instrument=reliance_nse, start=start, end=end, interval=interval, limit=10_000)
    assert python_path == expected


def test_one_minute_bars_come_back_as_stored_and_clipped_to_the_range(reliance_nse):
    bars = session_minutes(reliance_nse, day=dt.date(2024, 1, 15), rng=random.Random(1), missing=0)
    start, end = bars[10]["timestamp"], bars[20]["timestamp"]
    got = intraday_bars(instrument=reliance_nse, start=start, end=end, limit=100)
    assert got == bars[10:20]


def test_rows_of_other_intervals_or_instruments_are_ignored(reliance_nse, reliance_bse):
    at = dt.datetime(2024, 1, 15, 4, tzinfo=UTC)
    PriceHistoryIntradayFactory(instrument=reliance_nse, timestamp=at, close=1.0)
    PriceHistoryIntradayFactory(instrument=reliance_nse, timestamp=at, interval="5m", close=2.0)
    PriceHistoryIntradayFactory(instrument=reliance_bse, timestamp=at, close=3.0)
    got = intraday_bars(instrument=reliance_nse, start=at, end=at + dt.timedelta(hours=1), interval="5m", limit=10)
    assert [b["close"] for b in got] == [1.0]


@pytest.mark.parametrize("interval", ["1m", "15m"])
def test_keyset_pages_cover_every_bar_once(reliance_nse, monkeypatch, interval):
    session_minutes(reliance_nse, day=dt.date(2024, 1, 15), rng=random.Random(3))
    start = dt.datetime(2024, 1, 15, tzinfo=IST).astimezone(UTC)
    end = start + dt.timedelta(days=1)
    everything = intraday_bars(instrument=reliance_nse, start=start, end=end, interval=interval, limit=10_000)
    for vendor in ("postgresql", "sqlite"):
        monkeypatch.setattr(connections["default"], "vendor", vendor)
        pages, after = [], None
        while True:
            page = intraday_bars(instrument=reliance_nse, start=start, end=end, interval=interval, after=after, limit=7)
            pages += page
            if len(page) < 7:
                break
            after = page[-1]["timestamp"]
        assert pages == everything


# --- live bars -------------------------------------------------------------------------------


def _bar(ts: dt.datetime, close: float, volume: int = 10) -> dict:
    return {"timestamp": ts, "open": close, "high": close + 1, "low": close - 1, "close": close, "volume": volume}


def test_live_bars_replace_stored_ones_and_extend_the_series(reliance_nse):
    t0 = dt.datetime(2024, 1, 15, 3, 45, tzinfo=UTC)
    minute = dt.timedelta(minutes=1)
    for i in range(3):
        PriceHistoryIntradayFactory(instrument=reliance_nse, timestamp=t0 + i * minute, open=1.0, close=1.0, volume=5)
    live = [_bar(t0 + 2 * minute, 9.0, 7), _bar(t0 + 3 * minute, 10.0, 8), _bar(t0 + 60 * minute, 11.0)]
    end = t0 + dt.timedelta(minutes=30)

    got = intraday_bars(instrument=reliance_nse, start=t0, end=end, limit=10, live_bars=live)
    assert [(b["timestamp"], b["close"], b["volume"]) for b in got] == [
        (t0, 1.0, 5),
        (t0 + minute, 1.0, 5),
        (t0 + 2 * minute, 9.0, 7),
        (t0 + 3 * minute, 10.0, 8),
    ]
    assert got[3]["previous_close"] is None

    five = intraday_bars(instrument=reliance_nse, start=t0, end=end, interval="5m", limit=10, live_bars=live)
    assert len(five) == 1
    assert five[0]["timestamp"] == t0
    assert (five[0]["open"], five[0]["close"], five[0]["volume"]) == (1.0, 10.0, 5 + 5 + 7 + 8)
    assert (five[0]["high"], five[0]["low"]) == (11.0, 0.5)


def test_live_bars_respect_the_cursor(reliance_nse):
    t0 = dt.datetime(2024, 1, 15, 3, 45, tzinfo=UTC)
    minute = dt.timedelta(minutes=1)
    for i in range(7):
        PriceHistoryIntradayFactory(instrument=reliance_nse, timestamp=t0 + i * minute, close=1.0, volume=1)
    # A live update of minute 6 falls in the second 5-minute bucket, which starts after the cursor.
    live = [_bar(t0 + 6 * minute, 5.0, 100), _bar(t0 + minute, 7.0, 100)]
    end = t0 + dt.timedelta(hours=1)
    got = intraday_bars(instrument=reliance_nse, start=t0, end=end, interval="5m", after=t0, limit=10, live_bars=live)
    assert [(b["timestamp"], b["close"], b["volume"]) for b in got] == [(t0 + 5 * minute, 5.0, 1 + 100)]


# --- daily -----------------------------------------------------------------------------------


def test_daily_bars_by_date_with_cursor(reliance_nse):
    for i in range(10):
        PriceHistoryDailyFactory(instrument=reliance_nse, date=dt.date(2024, 1, 1) + dt.timedelta(days=i), close=i)
    got = daily_bars(
        instrument=reliance_nse,
        start_date=dt.date(2024, 1, 3),
        end_date=dt.date(2024, 1, 8),
        after=dt.date(2024, 1, 4),
        limit=3,
    )
    assert [b["timestamp"] for b in got] == [dt.date(2024, 1, 5), dt.date(2024, 1, 6), dt.date(2024, 1, 7)]
    assert [b["close"] for b in got] == [4.0, 5.0, 6.0]


# --- query plan ------------------------------------------------------------------------------


def test_history_queries_use_the_unique_bar_index(reliance_nse):
    others = [InstrumentFactory(exchange=reliance_nse.exchange) for _ in range(4)]
    base = dt.datetime(2024, 1, 1, tzinfo=UTC)
    PriceHistoryIntraday.objects.bulk_create(
        PriceHistoryIntraday(
            instrument=instrument,
            interval="1m",
            timestamp=base + dt.timedelta(minutes=i),
            open=1,
            high=1,
            low=1,
            close=1,
            volume=1,
        )
        for instrument in [reliance_nse, *others]
        for i in range(4000)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {PriceHistoryIntraday._meta.db_table}")
    start, end = base + dt.timedelta(hours=10), base + dt.timedelta(hours=12)

    sql, params = intraday_aggregate_sql(
        instrument_id=reliance_nse.pk,
        start=start,
        end=end,
        stride=dt.timedelta(hours=1),
        origin=base,
        after=start,
        limit=1001,
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "marketdata_intraday_unique_bar" in plan
    assert "Seq Scan" not in plan

    from marketdata.selectors.intraday import _stored_minutes

    minutes_plan = _stored_minutes(instrument=reliance_nse, start=start, end=end, after=None)[:1001].explain()
    assert "marketdata_intraday_unique_bar" in minutes_plan
    assert "Sort" not in minutes_plan  # the index already yields timestamp order
