"""The history endpoints over HTTP: shapes, symbol forms, dates, intervals, paging, bad input."""

from __future__ import annotations

import base64
import datetime as dt
import random
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from marketdata.tests.conftest import session_minutes
from marketdata.tests.factories import PriceHistoryDailyFactory, PriceHistoryIntradayFactory
from marketdata.tests.reference import pandas_resample

IST = ZoneInfo("Asia/Kolkata")
UTC = dt.UTC
pytestmark = pytest.mark.django_db


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_json(bar: dict) -> dict:
    return {**bar, "timestamp": iso(bar["timestamp"])}


def get(client, path: str, **params):
    return client.get(path, params)


def assert_error(response, status: int, field: str | None = None) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert body["status_code"] == status
    assert body["detail"]
    if field is not None:
        assert field in body["errors"], body
    return body


# --- happy paths ----------------------------------------------------------------------------


def test_intraday_one_minute_bars(user_api_client, aapl):
    t0 = dt.datetime(2024, 1, 16, 14, 30, tzinfo=UTC)
    PriceHistoryIntradayFactory(
        instrument=aapl,
        timestamp=t0,
        open=185.0,
        high=186.5,
        low=184.5,
        close=185.5,
        volume=1_000_000,
        previous_close=184.0,
        adj_close=185.5,
        delivery_percentage=None,
    )
    PriceHistoryIntradayFactory(instrument=aapl, timestamp=t0 + dt.timedelta(minutes=1), close=186.0)

    response = get(
        user_api_client, "/marketdata/intraday", symbol="AAPL", start_date="2024-01-16", end_date="2024-01-16"
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body == {
        "symbol": "AAPL",
        "exchange": "NASDAQ",
        "interval": "1m",
        "timezone": "America/New_York",
        "results": [
            {
                "timestamp": "2024-01-16T14:30:00Z",
                "open": 185.0,
                "high": 186.5,
                "low": 184.5,
                "close": 185.5,
                "volume": 1_000_000,
                "previous_close": 184.0,
                "adj_close": 185.5,
                "delivery_percentage": None,
            },
            {
                "timestamp": "2024-01-16T14:31:00Z",
                "open": 100.0,
                "high": 186.5,
                "low": 99.5,
                "close": 186.0,
                "volume": 1000,
                "previous_close": None,
                "adj_close": None,
                "delivery_percentage": None,
            },
        ],
        "next": None,
    }


def test_daily_bars_by_trading_date(user_api_client, aapl):
    for i in range(5):
        PriceHistoryDailyFactory(instrument=aapl, date=dt.date(2024, 1, 15) + dt.timedelta(days=i), close=190.0 + i)

    response = get(user_api_client, "/marketdata/daily/", symbol="AAPL", start_date="2024-01-16", end_date="2024-01-18")

    assert response.status_code == 200
    body = response.json()
    assert (body["symbol"], body["exchange"], body["interval"], body["timezone"]) == (
        "AAPL",
        "NASDAQ",
        "1d",
        "America/New_York",
    )
    assert [(r["timestamp"], r["close"]) for r in body["results"]] == [
        ("2024-01-16", 191.0),
        ("2024-01-17", 192.0),
        ("2024-01-18", 193.0),
    ]
    assert body["results"][0]["volume"] == 1_000_000
    assert body["next"] is None


@pytest.mark.parametrize(
    "path", ["/marketdata/intraday", "/marketdata/intraday/", "/marketdata/daily", "/marketdata/daily/"]
)
def test_with_and_without_trailing_slash(user_api_client, aapl, path):
    response = get(user_api_client, path, symbol="AAPL", start_date="2024-01-16")
    assert response.status_code == 200, response.content


def test_anonymous_is_401(api_client, aapl):
    for path in ("/marketdata/intraday", "/marketdata/daily"):
        assert_error(get(api_client, path, symbol="AAPL"), 401)


# --- symbols --------------------------------------------------------------------------------


def test_exchange_prefixed_symbol(user_api_client, reliance_nse, reliance_bse):
    PriceHistoryIntradayFactory(instrument=reliance_bse, timestamp=dt.datetime(2024, 1, 15, 4, tzinfo=UTC), close=7.0)
    for params in ({"symbol": "BSE:RELIANCE"}, {"symbol": "RELIANCE", "exchange": "BSE"}):
        response = get(user_api_client, "/marketdata/intraday", start_date="2024-01-15", **params)
        body = response.json()
        assert response.status_code == 200, body
        assert (body["symbol"], body["exchange"], body["timezone"]) == ("RELIANCE", "BSE", "Asia/Kolkata")
        assert [r["close"] for r in body["results"]] == [7.0]


def test_ambiguous_symbol_names_the_exchanges(user_api_client, reliance_nse, reliance_bse):
    body = assert_error(get(user_api_client, "/marketdata/daily", symbol="RELIANCE"), 400, "symbol")
    assert "BSE" in body["detail"]
    assert "NSE" in body["detail"]


@pytest.mark.parametrize("params", [{"symbol": "NOPE"}, {"symbol": "AAPL", "exchange": "NOPE"}, {"symbol": "NSE:AAPL"}])
def test_unknown_symbol_or_exchange_is_404(user_api_client, aapl, nse, params):
    assert_error(get(user_api_client, "/marketdata/intraday", **params), 404)
    assert_error(get(user_api_client, "/marketdata/daily", **params), 404)


# --- dates ----------------------------------------------------------------------------------


def test_dates_are_exchange_local_days(user_api_client, reliance_nse):
    inside = [
        dt.datetime(2024, 1, 14, 18, 30, tzinfo=UTC),  # 00:00 IST on the 15th
        dt.datetime(2024, 1, 14, 19, 0, tzinfo=UTC),  # 00:30 IST on the 15th
        dt.datetime(2024, 1, 15, 3, 45, tzinfo=UTC),  # 09:15 IST, the open
        dt.datetime(2024, 1, 15, 18, 29, tzinfo=UTC),  # 23:59 IST
    ]
    outside = [dt.datetime(2024, 1, 14, 18, 29, tzinfo=UTC), dt.datetime(2024, 1, 15, 18, 30, tzinfo=UTC)]
    for ts in inside + outside:
        PriceHistoryIntradayFactory(instrument=reliance_nse, timestamp=ts)

    response = get(
        user_api_client, "/marketdata/intraday", symbol="NSE:RELIANCE", start_date="2024-01-15", end_date="2024-01-15"
    )
    assert response.status_code == 200
    assert [r["timestamp"] for r in response.json()["results"]] == [iso(ts) for ts in inside]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-01-15T03:45:00Z", "2024-01-15T04:00:00Z"),
        ("2024-01-15T09:15:00+05:30", "2024-01-15T09:30:00+05:30"),
        ("2024-01-15T09:15:00 05:30", "2024-01-15T09:30:00 05:30"),  # "+" sent unencoded
        ("2024-01-15T09:15", "2024-01-15T09:30"),  # no offset: exchange-local
        ("2024-01-15 09:15:00", "2024-01-15T04:00:00.000000+00:00"),
    ],
)
def test_iso_instants_start_included_end_excluded(user_api_client, reliance_nse, start, end):
    t0 = dt.datetime(2024, 1, 15, 3, 44, tzinfo=UTC)
    for i in range(20):
        PriceHistoryIntradayFactory(instrument=reliance_nse, timestamp=t0 + dt.timedelta(minutes=i))
    response = get(user_api_client, "/marketdata/intraday", symbol="RELIANCE", start_date=start, end_date=end)
    results = response.json()["results"]
    assert response.status_code == 200
    assert results[0]["timestamp"] == "2024-01-15T03:45:00Z"
    assert results[-1]["timestamp"] == "2024-01-15T03:59:00Z"
    assert len(results) == 15


def test_daily_with_instants_uses_the_local_days_they_touch(user_api_client, reliance_nse):
    for i in range(5):
        PriceHistoryDailyFactory(instrument=reliance_nse, date=dt.date(2024, 1, 14) + dt.timedelta(days=i))
    # 2024-01-14T20:00Z is 01:30 IST on the 15th; 2024-01-16T18:30Z is midnight IST, the 17th excluded.
    response = get(
        user_api_client,
        "/marketdata/daily",
        symbol="RELIANCE",
        start_date="2024-01-14T20:00:00Z",
        end_date="2024-01-16T18:30:00Z",
    )
    assert [r["timestamp"] for r in response.json()["results"]] == ["2024-01-15", "2024-01-16"]


def test_defaults_last_day_for_intraday_and_last_year_for_daily(user_api_client, aapl):
    now = timezone.now().replace(second=0, microsecond=0)
    PriceHistoryIntradayFactory(instrument=aapl, timestamp=now - dt.timedelta(hours=2), close=1.0)
    PriceHistoryIntradayFactory(instrument=aapl, timestamp=now - dt.timedelta(hours=25), close=2.0)
    today = now.astimezone(ZoneInfo("America/New_York")).date()
    PriceHistoryDailyFactory(instrument=aapl, date=today - dt.timedelta(days=3), close=3.0)
    PriceHistoryDailyFactory(instrument=aapl, date=today - dt.timedelta(days=400), close=4.0)

    intraday = get(user_api_client, "/marketdata/intraday", symbol="AAPL").json()
    daily = get(user_api_client, "/marketdata/daily", symbol="AAPL").json()

    assert [r["close"] for r in intraday["results"]] == [1.0]
    assert [r["close"] for r in daily["results"]] == [3.0]


def test_one_date_given_means_the_default_span_from_or_to_it(user_api_client, aapl):
    t0 = dt.datetime(2024, 1, 16, 14, 30, tzinfo=UTC)
    for hours in (0, 23, 25):
        PriceHistoryIntradayFactory(instrument=aapl, timestamp=t0 + dt.timedelta(hours=hours), close=hours)
    for days in (-1, 0, 364, 365):
        PriceHistoryDailyFactory(instrument=aapl, date=dt.date(2023, 1, 16) + dt.timedelta(days=days), close=days)

    intraday = get(user_api_client, "/marketdata/intraday", symbol="AAPL", start_date="2024-01-16T14:30:00Z")
    daily = get(user_api_client, "/marketdata/daily", symbol="AAPL", end_date="2024-01-15")

    assert [r["close"] for r in intraday.json()["results"]] == [0.0, 23.0]
    assert [r["close"] for r in daily.json()["results"]] == [0.0, 364.0]


# --- intervals ------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", ["1m", "5m", "15m", "30m", "1h"])
def test_intervals_match_an_independent_resample(user_api_client, reliance_nse, interval):
    rng = random.Random(interval)
    bars = session_minutes(reliance_nse, day=dt.date(2024, 1, 15), rng=rng)
    bars += session_minutes(reliance_nse, day=dt.date(2024, 1, 16), rng=rng)
    expected = (
        bars
        if interval == "1m"
        else pandas_resample(bars, interval=interval, origin=dt.datetime(2024, 1, 15, 9, 15, tzinfo=IST))
    )

    response = get(
        user_api_client,
        "/marketdata/intraday",
        symbol="RELIANCE",
        start_date="2024-01-15",
        end_date="2024-01-16",
        interval=interval,
        limit=10_000,
    )

    body = response.json()
    assert response.status_code == 200, body
    assert body["interval"] == interval
    assert body["results"] == [as_json(bar) for bar in expected]


def test_nse_hour_bars_start_at_the_session_open(user_api_client, reliance_nse):
    session_minutes(reliance_nse, day=dt.date(2024, 1, 15), rng=random.Random(5), missing=0)
    body = get(
        user_api_client, "/marketdata/intraday", symbol="RELIANCE", start_date="2024-01-15", interval="1h"
    ).json()
    local_starts = [
        dt.datetime.fromisoformat(r["timestamp"]).astimezone(IST).strftime("%H:%M") for r in body["results"]
    ]
    assert local_starts == ["09:15", "10:15", "11:15", "12:15", "13:15", "14:15", "15:15"]


# --- pagination -----------------------------------------------------------------------------


def walk(client, path: str, **params) -> tuple[list[dict], int]:
    response = get(client, path, **params)
    pages, rows = 1, []
    while True:
        body = response.json()
        assert response.status_code == 200, body
        rows += body["results"]
        if body["next"] is None:
            return rows, pages
        assert body["next"].startswith("http://testserver/")
        response = client.get(body["next"])
        pages += 1


@pytest.mark.parametrize("interval", ["1m", "5m"])
def test_cursor_pages_walk_every_bar_once(user_api_client, reliance_nse, interval):
    session_minutes(reliance_nse, day=dt.date(2024, 1, 15), rng=random.Random(11))
    params = {"symbol": "RELIANCE", "start_date": "2024-01-15", "interval": interval}
    everything = get(user_api_client, "/marketdata/intraday", **params, limit=10_000).json()["results"]

    rows, pages = walk(user_api_client, "/marketdata/intraday", **params, limit=13)

    assert rows == everything
    assert len({r["timestamp"] for r in rows}) == len(rows)
    assert pages == len(everything) // 13 + 1


def test_daily_cursor_pages(user_api_client, aapl):
    for i in range(25):
        PriceHistoryDailyFactory(instrument=aapl, date=dt.date(2024, 1, 1) + dt.timedelta(days=i), close=i)
    rows, pages = walk(
        user_api_client, "/marketdata/daily", symbol="AAPL", start_date="2024-01-01", end_date="2024-12-31", limit=10
    )
    assert [r["close"] for r in rows] == [float(i) for i in range(25)]
    assert pages == 3


def test_next_link_pins_defaulted_dates_and_carries_an_opaque_cursor(user_api_client, aapl):
    now = timezone.now().replace(second=0, microsecond=0)
    for i in range(3):
        PriceHistoryIntradayFactory(instrument=aapl, timestamp=now - dt.timedelta(minutes=10 - i))
    body = get(user_api_client, "/marketdata/intraday", symbol="AAPL", start_date="", limit=2).json()
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["symbol"] == ["AAPL"]
    assert query["limit"] == ["2"]
    start = dt.datetime.fromisoformat(query["start_date"][0])
    end = dt.datetime.fromisoformat(query["end_date"][0])
    assert end - start == dt.timedelta(days=1)
    cursor = query["cursor"][0]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert dt.datetime.fromisoformat(decoded) == dt.datetime.fromisoformat(body["results"][-1]["timestamp"])


# --- bad input ------------------------------------------------------------------------------

BAD_INTRADAY = [
    ({}, "symbol"),
    ({"symbol": ""}, "symbol"),
    ({"symbol": "AAPL", "limit": "0"}, "limit"),
    ({"symbol": "AAPL", "limit": "10001"}, "limit"),
    ({"symbol": "AAPL", "limit": "ten"}, "limit"),
    ({"symbol": "AAPL", "limit": "-5"}, "limit"),
    ({"symbol": "AAPL", "interval": "2m"}, "interval"),
    ({"symbol": "AAPL", "interval": "1d"}, "interval"),
    ({"symbol": "AAPL", "start_date": "2024-02-30"}, "start_date"),
    ({"symbol": "AAPL", "start_date": "yesterday"}, "start_date"),
    ({"symbol": "AAPL", "end_date": "2024-13-01"}, "end_date"),
    ({"symbol": "AAPL", "end_date": "2024-01-15T25:00:00Z"}, "end_date"),
    ({"symbol": "AAPL", "start_date": "20240115"}, "start_date"),
    ({"symbol": "AAPL", "start_date": "0001-01-01"}, "start_date"),
    ({"symbol": "AAPL", "start_date": "9999-12-31"}, "start_date"),
    ({"symbol": "AAPL", "start_date": "2024-01-16", "end_date": "2024-01-15"}, "end_date"),
    ({"symbol": "AAPL", "start_date": "2024-01-15T10:00:00Z", "end_date": "2024-01-15T10:00:00Z"}, "end_date"),
    ({"symbol": "AAPL", "start_date": "2024-01-01", "end_date": "2024-03-01"}, "non_field_errors"),
    ({"symbol": "AAPL", "cursor": "!!!not-base64!!!"}, "cursor"),
    ({"symbol": "AAPL", "cursor": base64.urlsafe_b64encode(b"hello").decode()}, "cursor"),
    ({"symbol": "AAPL", "cursor": base64.urlsafe_b64encode(b"2024-01-15").decode()}, "cursor"),  # no time zone
    ({"symbol": "AAPL", "cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "cursor"),
    ({"symbol": "A" * 101}, "symbol"),
    ({"symbol": "AA\x00PL"}, "symbol"),
    ({"symbol": "AAPL", "exchange": "NAS\x00DAQ"}, "exchange"),
    ({"symbol": "AAPL", "start_date": "2024-01-15\x00"}, "start_date"),
    ({"symbol": "AAPL", "cursor": "\x00"}, "cursor"),
    ({"symbol": "AAPL", "limit": "9" * 40}, "limit"),
]


@pytest.mark.parametrize(("params", "field"), BAD_INTRADAY)
def test_bad_intraday_input_is_400(user_api_client, aapl, params, field):
    assert_error(get(user_api_client, "/marketdata/intraday", **params), 400, field)


def test_unknown_interval_lists_the_allowed_ones(user_api_client, aapl):
    body = assert_error(get(user_api_client, "/marketdata/intraday", symbol="AAPL", interval="2m"), 400, "interval")
    assert "1m, 5m, 15m, 30m, 1h" in body["errors"]["interval"][0]


def test_range_too_large_says_so(user_api_client, aapl):
    body = assert_error(
        get(user_api_client, "/marketdata/intraday", symbol="AAPL", start_date="2024-01-01", end_date="2024-06-01"),
        400,
        "non_field_errors",
    )
    assert "60 days" in body["detail"]


@override_settings(HISTORY_MAX_INTRADAY_DAYS=200, HISTORY_MAX_RANGE_DAYS=30)
def test_range_limits_come_from_settings(user_api_client, aapl):
    ok = get(user_api_client, "/marketdata/intraday", symbol="AAPL", start_date="2024-01-01", end_date="2024-06-01")
    assert ok.status_code == 200
    too_long = get(user_api_client, "/marketdata/daily", symbol="AAPL", start_date="2024-01-01", end_date="2024-03-01")
    assert_error(too_long, 400, "non_field_errors")


def test_a_dst_day_is_not_too_long(user_api_client, aapl):
    # 60 New York days across the November DST change last 60 days and an hour of real time.
    with override_settings(HISTORY_MAX_INTRADAY_DAYS=60):
        ok = get(user_api_client, "/marketdata/intraday", symbol="AAPL", start_date="2024-10-01", end_date="2024-11-29")
    assert ok.status_code == 200, ok.json()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"symbol": "AAPL", "limit": "0"}, "limit"),
        ({"symbol": "AAPL", "start_date": "2024-02-30"}, "start_date"),
        ({"symbol": "AAPL", "cursor": base64.urlsafe_b64encode(b"2024-01-15T00:00:00+00:00").decode()}, "cursor"),
        ({"symbol": "AAPL", "start_date": "2010-01-01", "end_date": "2024-01-01"}, "non_field_errors"),
    ],
)
def test_bad_daily_input_is_400(user_api_client, aapl, params, field):
    assert_error(get(user_api_client, "/marketdata/daily", **params), 400, field)


def test_bad_input_is_checked_before_the_symbol(user_api_client):
    assert_error(get(user_api_client, "/marketdata/intraday", symbol="NOPE", limit="0"), 400, "limit")


def test_intraday_includes_todays_bars_still_in_the_tick_store(user_api_client, aapl):
    """Persisted minutes, minutes only in Redis and the open bar, merged without duplicates."""
    import asyncio

    from django.conf import settings

    from ingestion.engine import Engine, InstrumentMeta
    from marketdata.live.store.redis import RedisTickStore
    from marketdata.live.types import Tick
    from marketdata.tests.factories import PriceHistoryIntradayFactory

    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    t0 = now - dt.timedelta(minutes=3)
    PriceHistoryIntradayFactory(instrument=aapl, timestamp=t0, open=1, high=1, low=1, close=1, volume=5)
    PriceHistoryIntradayFactory(instrument=aapl, timestamp=t0 + dt.timedelta(minutes=1), close=9, volume=7)

    async def stream():
        store = RedisTickStore(settings.REDIS_URL)
        await store.redis.flushdb()
        engine = Engine(store=store)
        engine.set_instruments([InstrumentMeta(aapl.pk, "AAPL", "NASDAQ", "America/New_York")])
        base = int((t0 + dt.timedelta(minutes=1)).timestamp() * 1000)
        # The second stored minute again (newer in Redis), then the current open minute.
        await engine.process(
            [Tick(aapl.pk, "SIM", base + 10, 2.0, size=3), Tick(aapl.pk, "SIM", base + 60_010, 3.0, size=4)]
        )
        await store.close()

    asyncio.run(stream())
    response = get(user_api_client, "/marketdata/intraday", symbol="AAPL", start_date=iso(t0))
    assert response.status_code == 200, response.json()
    rows = response.json()["results"]
    assert [r["timestamp"] for r in rows] == [iso(t0 + dt.timedelta(minutes=m)) for m in range(3)]
    assert [(r["close"], r["volume"]) for r in rows] == [(1, 5), (2.0, 3), (3.0, 4)]
