"""Contract of the seed's market data routes under ``/seed/marketdata/``.

The seed front end's chart asks ``daily/{symbol}`` and ``intraday/{symbol}`` once, with no
query parameters, and turns every row's ``datetime`` into a time with ``new Date``: so each
answer is a bare array of rows whose ``datetime`` carries ``Z``, newest first (as the seed),
with no two daily rows on one date. Real PostgreSQL and, for the live session, Redis.
"""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
import redis
from django.conf import settings
from django.utils import timezone

from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory
from marketdata.live.store.redis import QUOTES, bars_key
from marketdata.live.types import Bar, Quote
from marketdata.tests.factories import PriceHistoryDailyFactory, PriceHistoryIntradayFactory

pytestmark = pytest.mark.django_db

ROW_KEYS = {
    "instrument_id",
    "datetime",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "previous_close",
    "adj_close",
    "deliver_percentage",
}


@pytest.fixture
def utc_exchange():
    return ExchangeFactory(code="CRYPTO", timezone="UTC", market_open=None, market_close=None, is_open_24_hours=True)


@pytest.fixture
def coin(utc_exchange):
    return InstrumentFactory(symbol="BTCUSD", exchange=utc_exchange)


@pytest.fixture
def tick_store():
    """The Redis tick store of this test run; the keys a test writes are removed afterwards."""
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the stack's tick store)")
    client = redis.Redis.from_url(settings.REDIS_URL)
    written: list[tuple[str, str | None]] = []

    def quote(instrument, **fields):
        data = Quote(instrument_id=instrument.pk, **fields).as_dict()
        client.hset(QUOTES, instrument.pk, orjson.dumps(data))
        written.append((QUOTES, str(instrument.pk)))

    def minute_bar(instrument, at: dt.datetime, **fields):
        bar = Bar(instrument_id=instrument.pk, ts=int(at.timestamp() * 1000), **fields)
        client.zadd(bars_key(instrument.pk), {orjson.dumps(bar.as_dict()): bar.ts})
        written.append((bars_key(instrument.pk), None))

    quote.minute_bar = minute_bar
    yield quote
    for key, field in written:
        if field is None:
            client.delete(key)
        else:
            client.hdel(key, field)


def _parse(value: str) -> dt.datetime:
    assert value.endswith("Z"), value
    return dt.datetime.fromisoformat(value)


# --- permissions and errors --------------------------------------------------------------------
@pytest.mark.parametrize("path", ["intraday/BTCUSD", "daily/BTCUSD", "prev_close/CRYPTO"])
def test_anonymous_is_401(api_client, coin, path):
    response = api_client.get(f"/seed/marketdata/{path}")
    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("kind", ["intraday", "daily"])
@pytest.mark.parametrize("symbol", ["NOPE", "NOPE.CRYPTO", "CRYPTO:NOPE", "%00"])
def test_unknown_symbol_is_404_with_a_text_detail(user_api_client, coin, kind, symbol):
    response = user_api_client.get(f"/seed/marketdata/{kind}/{symbol}")
    assert response.status_code == 404
    assert response.json()["detail"] == "Instrument not found"


@pytest.mark.parametrize("kind", ["intraday", "daily"])
def test_inactive_instruments_are_hidden_from_users_not_admins(user_api_client, admin_api_client, coin, kind):
    coin.is_active = False
    coin.save()
    assert user_api_client.get(f"/seed/marketdata/{kind}/BTCUSD").status_code == 404
    response = admin_api_client.get(f"/seed/marketdata/{kind}/BTCUSD")
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize("kind", ["intraday", "daily"])
def test_a_symbol_on_two_exchanges_is_asked_for_with_its_suffix(user_api_client, kind):
    one = InstrumentFactory(symbol="XYZ", exchange=ExchangeFactory(code="AAA", timezone="UTC"))
    two = InstrumentFactory(symbol="XYZ", exchange=ExchangeFactory(code="BBB", timezone="UTC"))
    today = timezone.now().date()
    PriceHistoryDailyFactory(instrument=one, date=today - dt.timedelta(days=1), close=1.5)
    PriceHistoryDailyFactory(instrument=two, date=today - dt.timedelta(days=1), close=2.5)
    assert user_api_client.get(f"/seed/marketdata/{kind}/XYZ").status_code == 404
    if kind == "daily":
        assert [r["close"] for r in user_api_client.get("/seed/marketdata/daily/XYZ.AAA").json()] == [1.5]
        assert [r["close"] for r in user_api_client.get("/seed/marketdata/daily/BBB:XYZ").json()] == [2.5]
    else:
        assert user_api_client.get("/seed/marketdata/intraday/XYZ.BBB").status_code == 200


def test_both_spellings_and_no_redirect(user_api_client, coin):
    for path in ("/seed/marketdata/daily/BTCUSD", "/seed/marketdata/daily/BTCUSD/"):
        assert user_api_client.get(path).status_code == 200


# --- intraday ----------------------------------------------------------------------------------
def test_intraday_rows_are_5_minute_bars_newest_first(user_api_client, coin):
    start = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(hours=2)
    start -= dt.timedelta(minutes=start.minute % 5)
    for n in range(12):  # 12 one-minute bars: three 5-minute buckets (5, 5, 2)
        PriceHistoryIntradayFactory(
            instrument=coin, timestamp=start + dt.timedelta(minutes=n), open=100 + n, close=100.5 + n, volume=10
        )
    old = timezone.now() - dt.timedelta(days=45)  # outside the 30-day window
    PriceHistoryIntradayFactory(instrument=coin, timestamp=old, open=1, close=1)

    response = user_api_client.get("/seed/marketdata/intraday/BTCUSD")
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list)
    assert [_parse(r["datetime"]) for r in rows] == [start + dt.timedelta(minutes=m) for m in (10, 5, 0)]
    first_bucket = rows[-1]
    assert set(first_bucket) == ROW_KEYS | {"interval"}
    assert first_bucket["interval"] == "5m"
    assert first_bucket["instrument_id"] == coin.pk
    assert first_bucket["open"] == 100
    assert first_bucket["close"] == 104.5
    assert first_bucket["high"] == 105.0
    assert first_bucket["low"] == 99.5
    assert first_bucket["volume"] == 50
    assert rows[0]["volume"] == 20


def test_intraday_merges_todays_bars_from_the_tick_store(user_api_client, coin, tick_store):
    at = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=20)
    at -= dt.timedelta(minutes=at.minute % 5)
    PriceHistoryIntradayFactory(instrument=coin, timestamp=at, open=10, close=11, volume=1)
    # The live bar of the same minute replaces the stored one; the next minute is only live.
    tick_store.minute_bar(coin, at, open=10, high=13, low=9, close=12, volume=5)
    tick_store.minute_bar(coin, at + dt.timedelta(minutes=1), open=12, high=14, low=12, close=13.5, volume=7)

    rows = user_api_client.get("/seed/marketdata/intraday/BTCUSD").json()
    assert len(rows) == 1
    assert _parse(rows[0]["datetime"]) == at
    assert (rows[0]["open"], rows[0]["high"], rows[0]["low"], rows[0]["close"], rows[0]["volume"]) == (
        10,
        14,
        9,
        13.5,
        12,
    )


def test_intraday_without_data_is_an_empty_array(user_api_client, coin):
    response = user_api_client.get("/seed/marketdata/intraday/BTCUSD")
    assert response.status_code == 200
    assert response.json() == []


# --- daily -------------------------------------------------------------------------------------
def test_daily_rows_are_trading_dates_at_utc_midnight_newest_first(user_api_client):
    nse = ExchangeFactory(code="NSE", timezone="Asia/Kolkata")
    stock = InstrumentFactory(symbol="RELIANCE", exchange=nse)
    today = timezone.now().astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).date()
    days = [today - dt.timedelta(days=n) for n in (3, 2, 1)]
    for n, day in enumerate(days):
        PriceHistoryDailyFactory(
            instrument=stock, date=day, open=100 + n, close=101 + n, volume=1000 * (n + 1), previous_close=99 + n
        )

    rows = user_api_client.get("/seed/marketdata/daily/RELIANCE").json()
    assert [r["datetime"] for r in rows] == [f"{d.isoformat()}T00:00:00Z" for d in reversed(days)]
    newest = rows[0]
    assert set(newest) == ROW_KEYS
    assert newest["instrument_id"] == stock.pk
    assert (newest["open"], newest["close"], newest["high"], newest["low"]) == (102, 103, 104, 101)
    assert newest["volume"] == 3000
    assert newest["previous_close"] == 101
    assert newest["adj_close"] is None
    assert newest["deliver_percentage"] is None


def test_daily_adds_the_live_session_as_a_new_date(user_api_client, coin, tick_store):
    yesterday = timezone.now().date() - dt.timedelta(days=1)
    PriceHistoryDailyFactory(instrument=coin, date=yesterday, open=90, close=95)
    now_ms = int(timezone.now().timestamp() * 1000)
    tick_store(coin, ts=now_ms, last=97.5, open=95.5, high=98, low=94, volume=1234, previous_close=95)

    rows = user_api_client.get("/seed/marketdata/daily/BTCUSD").json()
    assert [r["datetime"] for r in rows] == [
        f"{timezone.now().date().isoformat()}T00:00:00Z",
        f"{yesterday.isoformat()}T00:00:00Z",
    ]
    assert (rows[0]["open"], rows[0]["high"], rows[0]["low"], rows[0]["close"], rows[0]["volume"]) == (
        95.5,
        98,
        94,
        97.5,
        1234,
    )
    assert rows[0]["previous_close"] == 95


def test_daily_patches_a_stored_row_of_the_live_session_never_duplicates_it(user_api_client, coin, tick_store):
    today = timezone.now().date()
    PriceHistoryDailyFactory(instrument=coin, date=today, open=95.5, high=96, low=95, close=95.8, adj_close=95.8)
    tick_store(coin, ts=int(timezone.now().timestamp() * 1000), last=97.5, open=95.5, high=98, low=94, volume=9)

    rows = user_api_client.get("/seed/marketdata/daily/BTCUSD").json()
    assert len(rows) == 1
    assert len({r["datetime"] for r in rows}) == len(rows)
    assert (rows[0]["high"], rows[0]["low"], rows[0]["close"], rows[0]["volume"]) == (98, 94, 97.5, 9)
    assert rows[0]["adj_close"] == 95.8


def test_daily_ignores_a_quote_older_than_the_stored_rows(user_api_client, coin, tick_store):
    today = timezone.now().date()
    PriceHistoryDailyFactory(instrument=coin, date=today, open=10, close=11)
    old_ms = int((timezone.now() - dt.timedelta(days=3)).timestamp() * 1000)
    tick_store(coin, ts=old_ms, last=1, open=1, high=1, low=1)

    rows = user_api_client.get("/seed/marketdata/daily/BTCUSD").json()
    assert [(r["open"], r["close"]) for r in rows] == [(10, 11)]


def test_daily_without_data_is_an_empty_array(user_api_client, coin):
    assert user_api_client.get("/seed/marketdata/daily/BTCUSD").json() == []


# --- prev_close --------------------------------------------------------------------------------
def test_prev_close_is_the_latest_close_before_today_per_instrument(user_api_client, utc_exchange, coin):
    eth = InstrumentFactory(symbol="ETHUSD", exchange=utc_exchange)
    InstrumentFactory(symbol="NOHISTORY", exchange=utc_exchange)
    hidden = InstrumentFactory(symbol="HIDDEN", exchange=utc_exchange, is_active=False)
    today = timezone.now().date()
    PriceHistoryDailyFactory(instrument=coin, date=today - dt.timedelta(days=3), close=1.0)
    PriceHistoryDailyFactory(instrument=coin, date=today - dt.timedelta(days=1), close=2.0)
    PriceHistoryDailyFactory(instrument=coin, date=today, close=3.0)  # today's is not a previous close
    PriceHistoryDailyFactory(instrument=eth, date=today - dt.timedelta(days=2), close=20.0)
    PriceHistoryDailyFactory(instrument=hidden, date=today - dt.timedelta(days=1), close=9.0)

    response = user_api_client.get("/seed/marketdata/prev_close/crypto")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"exchange_code", "data"}
    assert body["exchange_code"] == "CRYPTO"
    assert body["data"] == [
        {"symbol": "BTCUSD", "price": 2.0, "timestamp": f"{(today - dt.timedelta(days=1)).isoformat()}T00:00:00Z"},
        {"symbol": "ETHUSD", "price": 20.0, "timestamp": f"{(today - dt.timedelta(days=2)).isoformat()}T00:00:00Z"},
    ]


def test_prev_close_uses_compat_symbols(user_api_client):
    today = timezone.now().date()
    aaa = ExchangeFactory(code="AAA", timezone="UTC")
    one = InstrumentFactory(symbol="XYZ", exchange=aaa)
    InstrumentFactory(symbol="XYZ", exchange=ExchangeFactory(code="BBB", timezone="UTC"))
    PriceHistoryDailyFactory(instrument=one, date=today - dt.timedelta(days=1), close=5.0)
    data = user_api_client.get("/seed/marketdata/prev_close/AAA").json()["data"]
    assert [d["symbol"] for d in data] == ["XYZ.AAA"]


@pytest.mark.parametrize("code", ["NOPE", "%00"])
def test_prev_close_of_an_unknown_exchange_is_404(user_api_client, code):
    response = user_api_client.get(f"/seed/marketdata/prev_close/{code}")
    assert response.status_code == 404
    assert response.json()["detail"] == "Exchange not found"


def test_prev_close_of_an_exchange_without_history_is_empty(user_api_client, coin):
    assert user_api_client.get("/seed/marketdata/prev_close/CRYPTO").json() == {"exchange_code": "CRYPTO", "data": []}
