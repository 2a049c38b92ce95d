"""History backfill from Yahoo (through yfinance) and Dhan (REST) against a local stub of their
APIs, gap finding and repair, and the shared token bucket that paces provider requests.

The stub answers the providers' real JSON shapes; yfinance's own code does the Yahoo requests
and parsing (the provider's ``rest_url`` points its Yahoo hosts at the stub). The rate limiter
is the real Redis token bucket.
"""

from __future__ import annotations

import io
import threading
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command

from exchanges.tests.factories import ExchangeFactory
from ingestion.backfill import BackfillError, backfill, find_gaps, repair_gaps
from ingestion.backfill.ratelimit import LocalTokenBucket, RedisTokenBucket
from ingestion.backfill.yahoo import INTRADAY_LOOKBACK_DAYS
from ingestion.models import Provider
from ingestion.tests.factories import (
    ExchangeProviderMappingFactory,
    ProviderFactory,
    ProviderInstrumentMappingFactory,
)
from ingestion.tests.fakes.history_stub import HistoryStub
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday
from marketdata.tests.factories import PriceHistoryIntradayFactory

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
IST = ZoneInfo("Asia/Kolkata")
DHAN_CREDENTIALS = {"access_token": "stub-token", "client_id": "stub-client"}


@pytest.fixture
def stub(settings):
    with HistoryStub(dhan_token="stub-token", dhan_client_id="stub-client") as server:
        # A local fake is no provider's own host: the deployment setting lets the providers reach it.
        settings.PROVIDER_URL_ALLOWED_HOSTS = [server.host]
        yield server


@pytest.fixture
def equity():
    return InstrumentTypeFactory(code="EQ", name="Equity")


@pytest.fixture
def yf(stub):
    return ProviderFactory(
        code="YF",
        kind=Provider.Kind.YAHOO,
        settings={"rest_url": stub.url, "backoff_s": 0.01},
        rate_limit=50,
    )


@pytest.fixture
def dhan_provider(stub):
    return ProviderFactory(
        code="DHAN",
        kind=Provider.Kind.DHAN,
        settings={"rest_url": stub.url + "/v2", "backoff_s": 0.01},
        credentials=dict(DHAN_CREDENTIALS),
        rate_limit=50,
    )


@pytest.fixture
def nasdaq():
    return ExchangeFactory(code="NASDAQ", timezone="America/New_York", market_open=time(9, 30), market_close=time(16))


@pytest.fixture
def nse():
    return ExchangeFactory(
        code="NSE",
        timezone="Asia/Kolkata",
        currency="INR",
        market_open=time(9, 15),
        market_close=time(15, 30),
        calendar_code="XBOM",
    )


def _us_instrument(symbol, *, exchange, equity, yf):
    instrument = InstrumentFactory(symbol=symbol, exchange=exchange, instrument_type=equity)
    ProviderInstrumentMappingFactory(provider=yf, instrument=instrument, search_code=symbol)
    return instrument


def _nse_instrument(symbol, security_id, *, exchange, equity, dhan_provider):
    instrument = InstrumentFactory(symbol=symbol, exchange=exchange, instrument_type=equity)
    ProviderInstrumentMappingFactory(
        provider=dhan_provider, instrument=instrument, search_code=security_id, segment="NSE_EQ"
    )
    return instrument


def _recent_weekday(zone: ZoneInfo, days_back: int = 1) -> date:
    """A Monday-to-Friday date ``days_back`` or more days before today (in ``zone``)."""
    day = datetime.now(zone).date() - timedelta(days=days_back)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _stub_yahoo_days(stub, symbol):
    stub.yahoo_symbol(symbol, tz="America/New_York", open_time=time(9, 30), close_time=time(16))
    days = {
        date(2024, 1, 16): (100.0, 102.0, 99.0, 101.0, 1000, 100.5),
        date(2024, 1, 17): (101.0, 103.5, 100.0, 103.0, 2000, 102.4),
        date(2024, 1, 18): (103.0, 104.0, 101.5, 102.0, 1500, 101.9),
    }
    stub.yahoo_days(symbol, days, dividends={date(2024, 1, 17): 0.24}, splits={date(2024, 1, 18): (4, 1)})
    return days


# --- Yahoo --------------------------------------------------------------------------------------


def test_yahoo_daily_backfill_writes_provider_rows_and_reruns_idempotently(stub, yf, nasdaq, equity):
    instrument = _us_instrument("YDAY", exchange=nasdaq, equity=equity, yf=yf)
    days = _stub_yahoo_days(stub, "YDAY")

    result = backfill(provider_code="YF", interval="1d", start="2024-01-16", end="2024-01-18", symbols=["YDAY"])

    assert result["rows"] == 3 and result["errors"] == []
    rows = {row.date: row for row in PriceHistoryDaily.objects.filter(instrument=instrument)}
    assert sorted(rows) == sorted(days)
    for day, (open_, high, low, close, volume, adj) in days.items():
        row = rows[day]
        assert (row.open, row.high, row.low, row.close, row.volume) == (open_, high, low, close, volume)
        assert row.adj_close == pytest.approx(adj)
        assert row.source_id == yf.pk and row.from_rollup is False
    assert rows[date(2024, 1, 16)].dividend is None
    assert rows[date(2024, 1, 17)].dividend == pytest.approx(0.24)
    assert rows[date(2024, 1, 18)].split == pytest.approx(4.0)
    assert rows[date(2024, 1, 17)].previous_close == 101.0
    assert rows[date(2024, 1, 18)].previous_close == 103.0

    again = backfill(provider_code="YF", interval="1d", start="2024-01-16", end="2024-01-18", symbols="YDAY")
    assert again["rows"] == 3
    assert PriceHistoryDaily.objects.filter(instrument=instrument).count() == 3


def test_yahoo_minute_backfill_keeps_the_regular_session_in_utc(stub, yf, nasdaq, equity):
    instrument = _us_instrument("YMIN", exchange=nasdaq, equity=equity, yf=yf)
    day = _recent_weekday(NEW_YORK)
    stub.yahoo_symbol("YMIN", tz="America/New_York", open_time=time(9, 30), close_time=time(16))
    open_ = datetime.combine(day, time(9, 30), tzinfo=NEW_YORK)
    regular = {
        int((open_ + timedelta(minutes=i)).timestamp()): (10.0 + i, 11.0 + i, 9.5 + i, 10.5 + i, 100 * (i + 1))
        for i in range(5)
    }
    premarket = {int((open_ - timedelta(minutes=5)).timestamp()): (9.0, 9.0, 9.0, 9.0, 5)}
    stub.yahoo_minutes("YMIN", {**regular, **premarket})

    result = backfill(provider_code="YF", interval="1m", start=day, end=day, symbols=["NASDAQ:YMIN"])

    assert result["rows"] == 5, result
    stored = list(
        PriceHistoryIntraday.objects.filter(instrument=instrument)
        .order_by("timestamp")
        .values_list("timestamp", "open", "high", "low", "close", "volume", "interval", "source_id")
    )
    expected = [(datetime.fromtimestamp(ts, UTC), *bar, "1m", yf.pk) for ts, bar in sorted(regular.items())]
    assert stored == expected

    backfill(provider_code="YF", interval="1m", start=day, end=day, symbols=["YMIN"])
    assert PriceHistoryIntraday.objects.filter(instrument=instrument).count() == 5


def test_yahoo_minute_range_is_clamped_to_what_yahoo_keeps(stub, yf, nasdaq, equity):
    _us_instrument("YOLD", exchange=nasdaq, equity=equity, yf=yf)
    stub.yahoo_symbol("YOLD", tz="America/New_York", open_time=time(9, 30), close_time=time(16))
    today = datetime.now(UTC).date()

    result = backfill(provider_code="YF", interval="1m", start=today - timedelta(days=45), end=today, symbols=["YOLD"])

    assert any("start moved" in warning for warning in result["warnings"])
    assert result["errors"] == [], result
    earliest = datetime.combine(today - timedelta(days=INTRADAY_LOOKBACK_DAYS - 1), time.min, tzinfo=NEW_YORK)
    charts = [r for r in stub.requests_to("/v8/finance/chart/YOLD") if "period1" in r.query]
    assert charts and min(int(r.query["period1"]) for r in charts) >= int(earliest.timestamp())
    assert all(r.status == 200 for r in charts)  # the stub answers 422 past Yahoo's limits

    with pytest.raises(BackfillError, match="last 30 days"):
        backfill(
            provider_code="YF",
            interval="1m",
            start=today - timedelta(days=60),
            end=today - timedelta(days=35),
            symbols=["YOLD"],
        )


def test_yahoo_minute_backfill_reaches_back_30_days_in_7_day_windows(stub, yf, nasdaq, equity):
    """Yahoo serves a month of 1-minute bars, 8 days per request at most: all of it is fetched."""
    instrument = _us_instrument("YMONTH", exchange=nasdaq, equity=equity, yf=yf)
    stub.yahoo_symbol("YMONTH", tz="America/New_York", open_time=time(9, 30), close_time=time(16))
    days = sorted({_recent_weekday(NEW_YORK, days_back) for days_back in (24, 17, 10, 2)})
    minutes = {}
    for n, day in enumerate(days):
        open_ = datetime.combine(day, time(9, 30), tzinfo=NEW_YORK)
        for i in range(3):
            minutes[int((open_ + timedelta(minutes=i)).timestamp())] = (10.0 + n, 11.0 + n, 9.0 + n, 10.5 + n, 100 + i)
    stub.yahoo_minutes("YMONTH", minutes)
    today = datetime.now(UTC).date()

    result = backfill(
        provider_code="YF", interval="1m", start=today - timedelta(days=28), end=today, symbols=["YMONTH"]
    )

    assert result["errors"] == [] and result["warnings"] == [], result
    assert result["rows"] == len(minutes) == 3 * len(days)
    stored = PriceHistoryIntraday.objects.filter(instrument=instrument).values_list("timestamp", flat=True)
    assert sorted(int(ts.timestamp()) for ts in stored) == sorted(minutes)
    charts = [r for r in stub.requests_to("/v8/finance/chart/YMONTH") if r.query.get("interval") == "1m"]
    assert len(charts) >= 4 and all(r.status == 200 for r in charts)
    assert all(int(r.query["period2"]) - int(r.query["period1"]) <= 8 * 86_400 for r in charts)


def test_yahoo_rate_limit_backs_off_and_succeeds(stub, yf, nasdaq, equity):
    instrument = _us_instrument("Y429", exchange=nasdaq, equity=equity, yf=yf)
    _stub_yahoo_days(stub, "Y429")
    stub.throttle("/v8/finance/chart/Y429", 3)

    result = backfill(provider_code="YF", interval="1d", start="2024-01-16", end="2024-01-18", symbols=["Y429"])

    assert result["errors"] == [] and result["rows"] == 3
    statuses = [r.status for r in stub.requests_to("/v8/finance/chart/Y429")]
    assert statuses.count(429) == 3 and statuses[-1] == 200
    assert PriceHistoryDaily.objects.filter(instrument=instrument).count() == 3


# --- Dhan ---------------------------------------------------------------------------------------


def _ist(day: date, hh: int, mm: int) -> int:
    return int(datetime.combine(day, time(hh, mm), tzinfo=IST).timestamp())


def test_dhan_intraday_backfill_chunks_long_ranges(stub, dhan_provider, nse, equity):
    instrument = _nse_instrument("RELIANCE", "2885", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    first, last = date(2024, 1, 15), date(2024, 5, 15)  # 122 days: two requests
    minutes = {
        _ist(first, 9, 15): (2500.0, 2505.0, 2499.0, 2503.0, 1200),
        _ist(first, 9, 16): (2503.0, 2504.0, 2501.0, 2502.5, 800),
        _ist(last, 15, 29): (2900.0, 2901.0, 2899.5, 2900.5, 400),
    }
    stub.dhan_minutes("NSE_EQ", "2885", minutes)

    result = backfill(provider_code="DHAN", interval="1m", start=first, end=last, symbols=["NSE:RELIANCE"])

    assert result["errors"] == [] and result["rows"] == 3
    calls = stub.requests_to("/v2/charts/intraday")
    assert len(calls) == 2 and all(call.status == 200 for call in calls)
    for call in calls:
        assert call.headers["access-token"] == "stub-token" and call.headers["client-id"] == "stub-client"
        assert call.body["securityId"] == "2885" and call.body["exchangeSegment"] == "NSE_EQ"
        assert call.body["instrument"] == "EQUITY" and call.body["interval"] == "1"
    stored = dict(PriceHistoryIntraday.objects.filter(instrument=instrument).values_list("timestamp", "close"))
    assert stored == {datetime.fromtimestamp(ts, UTC): bar[3] for ts, bar in minutes.items()}
    assert min(stored).astimezone(IST).time() == time(9, 15)

    backfill(provider_code="DHAN", interval="1m", start=first, end=last, symbols=["RELIANCE"])
    assert PriceHistoryIntraday.objects.filter(instrument=instrument).count() == 3


def test_dhan_daily_backfill_uses_ist_dates(stub, dhan_provider, nse, equity):
    instrument = _nse_instrument("INFY", "1594", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    days = {
        date(2024, 3, 11): (1600.0, 1620.0, 1590.0, 1610.0, 50000),
        date(2024, 3, 12): (1610.0, 1630.0, 1605.0, 1625.0, 60000),
        date(2024, 3, 13): (1625.0, 1640.0, 1615.0, 1618.0, 55000),
    }
    stub.dhan_days("NSE_EQ", "1594", days)

    result = backfill(provider_code="DHAN", interval="1d", start="2024-03-11", end="2024-03-13", symbols=["INFY"])

    assert result["rows"] == 3
    [call] = stub.requests_to("/v2/charts/historical")
    assert call.body["fromDate"] == "2024-03-11" and call.body["toDate"] == "2024-03-14"
    assert call.body["expiryCode"] == 0
    stored = {
        row.date: (row.open, row.high, row.low, row.close, row.volume)
        for row in PriceHistoryDaily.objects.filter(instrument=instrument)
    }
    assert stored == days
    backfill(provider_code="DHAN", interval="1d", start="2024-03-11", end="2024-03-13", symbols=["INFY"])
    assert PriceHistoryDaily.objects.filter(instrument=instrument).count() == 3


def test_dhan_rate_limit_backs_off_and_succeeds(stub, dhan_provider, nse, equity):
    instrument = _nse_instrument("HDFCBANK", "1333", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    stub.dhan_minutes("NSE_EQ", "1333", {_ist(date(2024, 2, 1), 10, 0): (1400.0, 1401.0, 1399.0, 1400.5, 10)})
    stub.throttle("/v2/charts/intraday", 2)

    result = backfill(provider_code="DHAN", interval="1m", start="2024-02-01", end="2024-02-01", symbols=["HDFCBANK"])

    assert result["errors"] == [] and result["rows"] == 1
    assert [c.status for c in stub.requests_to("/v2/charts/intraday")] == [429, 429, 200]
    assert PriceHistoryIntraday.objects.filter(instrument=instrument).count() == 1


def test_provider_error_for_one_instrument_does_not_stop_the_others(stub, dhan_provider, nse, equity):
    _nse_instrument("GOOD", "11", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    _nse_instrument("NODATA", "12", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    stub.dhan_days("NSE_EQ", "11", {date(2024, 3, 11): (1.0, 2.0, 0.5, 1.5, 10)})

    result = backfill(provider_code="DHAN", interval="1d", start="2024-03-11", end="2024-03-11", symbols="GOOD,NODATA")

    assert result["per_instrument"] == {"NSE:GOOD": 1}
    assert len(result["errors"]) == 1 and "NSE:NODATA" in result["errors"][0] and "DH-907" in result["errors"][0]


# --- bad arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"provider_code": "NOPE"}, "provider", "Unknown provider"),
        ({"provider_code": "SIMX"}, "provider", "no history API"),
        ({"interval": "5m"}, "interval", "Unknown interval"),
        ({"start": "2024-02-30"}, "start", "not a valid date"),
        ({"start": "2024-03-12", "end": "2024-03-11"}, "start", "after end"),
        ({"start": "2999-01-01", "end": "2999-01-02"}, "start", "in the future"),
        ({"symbols": ["GOOD", "NOSUCH"]}, "symbols", "Unknown symbol 'NOSUCH'"),
        ({"symbols": ["UNMAPPED"]}, "symbols", "no active DHAN mapping"),
    ],
)
def test_bad_arguments_fail_before_any_request_or_write(stub, dhan_provider, nse, equity, kwargs, field, message):
    ProviderFactory(code="SIMX", kind=Provider.Kind.SIMULATED)
    _nse_instrument("GOOD", "11", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    InstrumentFactory(symbol="UNMAPPED", exchange=nse, instrument_type=equity)
    stub.dhan_days("NSE_EQ", "11", {date(2024, 3, 11): (1.0, 2.0, 0.5, 1.5, 10)})
    args = {
        "provider_code": "DHAN",
        "interval": "1d",
        "start": "2024-03-11",
        "end": "2024-03-11",
        "symbols": ["GOOD"],
        **kwargs,
    }

    with pytest.raises(BackfillError) as caught:
        backfill(**args)

    assert message in " ".join(caught.value.errors[field])
    assert stub.requests == []
    assert PriceHistoryDaily.objects.count() == 0


def test_dhan_without_credentials_is_refused(stub, dhan_provider, nse, equity):
    _nse_instrument("GOOD", "11", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    dhan_provider.credentials = {"client_id": "stub-client"}
    dhan_provider.save()

    with pytest.raises(BackfillError, match="access_token"):
        backfill(provider_code="DHAN", interval="1d", start="2024-03-11", end="2024-03-11", symbols=["GOOD"])
    assert stub.requests == []


# --- the command --------------------------------------------------------------------------------


def test_backfill_history_command(stub, dhan_provider, nse, equity):
    instrument = _nse_instrument("INFY", "1594", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    instrument.record_data = True
    instrument.save()
    stub.dhan_days("NSE_EQ", "1594", {date(2024, 3, 11): (1.0, 2.0, 0.5, 1.5, 10)})
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "backfill_history",
        "--provider=DHAN",
        "--interval=1d",
        "--start=2024-03-11",
        "--end=2024-03-11",
        "--progress",
        stdout=out,
        stderr=err,
    )

    assert PriceHistoryDaily.objects.filter(instrument=instrument).count() == 1
    assert "1 rows" in out.getvalue()
    assert "1/1" in err.getvalue()  # tqdm's bar on stderr

    with pytest.raises(CommandError, match="after end"):
        call_command("backfill_history", "--provider=DHAN", "--interval=1d", "--start=2024-03-12", "--end=2024-03-11")
    with pytest.raises(CommandError, match="Unknown provider"):
        call_command("backfill_history", "--provider=XX", "--interval=1d")


# --- gaps ---------------------------------------------------------------------------------------

TOKYO = ZoneInfo("Asia/Tokyo")
DAY = date(2024, 1, 15)
AFTER = datetime(2024, 1, 20, tzinfo=UTC)


def _ist_at(hh: int, mm: int, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=IST).astimezone(UTC)


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    out, at = [], start
    while at < end:
        out.append(at)
        at += timedelta(minutes=1)
    return out


def _store(instrument, minutes: list[datetime], price: float = 100.0) -> None:
    PriceHistoryIntraday.objects.bulk_create(
        PriceHistoryIntradayFactory.build(
            instrument=instrument, timestamp=at, open=price, high=price, low=price, close=price, volume=1
        )
        for at in minutes
    )


def test_find_gaps_returns_missing_runs_inside_past_sessions(nse):
    instrument = InstrumentFactory(exchange=nse)
    session = _minutes(_ist_at(9, 15), _ist_at(15, 30))
    missing = {*session[:3], *session[100:110], session[-1]}
    _store(instrument, [m for m in session if m not in missing])
    # The next trading day has no bars at all; Saturday has no session.
    tuesday = DAY + timedelta(days=1)

    gaps = find_gaps(instrument=instrument, start_date=DAY, end_date=tuesday + timedelta(days=4), now=AFTER)

    assert gaps == [
        (_ist_at(9, 15), _ist_at(9, 18)),
        (session[100], session[110]),
        (_ist_at(15, 29), _ist_at(15, 30)),
        *[
            (_ist_at(9, 15, day), _ist_at(15, 30, day))
            for day in (tuesday + timedelta(days=n) for n in range(4))  # Tue..Fri, Sat/Sun closed
        ],
    ]
    # Today's session is not over: not a gap yet.
    assert find_gaps(instrument=instrument, start_date=DAY, end_date=DAY, now=_ist_at(15, 0)) == []


def test_find_gaps_skips_the_lunch_break():
    tse = ExchangeFactory(
        code="TSE",
        timezone="Asia/Tokyo",
        currency="JPY",
        market_open=time(9),
        market_close=time(15),
        calendar_code="XTKS",
    )
    instrument = InstrumentFactory(exchange=tse)

    gaps = find_gaps(instrument=instrument, start_date=DAY, end_date=DAY, now=AFTER)

    def jst(hh, mm):
        return datetime.combine(DAY, time(hh, mm), tzinfo=TOKYO).astimezone(UTC)

    assert gaps == [(jst(9, 0), jst(11, 30)), (jst(12, 30), jst(15, 0))]


def test_repair_gaps_fills_only_missing_minutes_through_the_exchange_provider(stub, dhan_provider, nse, equity):
    ExchangeProviderMappingFactory(exchange=nse, provider=dhan_provider, is_primary=True, priority=10)
    instrument = _nse_instrument("SBIN", "3045", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    session = _minutes(_ist_at(9, 15), _ist_at(15, 30))
    missing = session[10:15]
    _store(instrument, [m for m in session if m not in missing], price=100.0)
    # Dhan has every minute, at other prices: only the missing five may be written.
    stub.dhan_minutes("NSE_EQ", "3045", {int(m.timestamp()): (200.0, 201.0, 199.0, 200.5, 7) for m in session})

    result = repair_gaps(start=DAY, end=DAY, symbols=["NSE:SBIN"], now=AFTER)

    assert result["missing_minutes"] == 5 and result["filled"] == 5 and result["errors"] == []
    assert result["per_instrument"]["NSE:SBIN"] == {"missing": 5, "filled": 5, "provider": "DHAN"}
    rows = dict(PriceHistoryIntraday.objects.filter(instrument=instrument).values_list("timestamp", "close"))
    assert len(rows) == len(session)
    assert {at for at, close in rows.items() if close == 200.5} == set(missing)
    assert find_gaps(instrument=instrument, start_date=DAY, end_date=DAY, now=AFTER) == []
    assert repair_gaps(start=DAY, end=DAY, symbols=["SBIN"], now=AFTER)["missing_minutes"] == 0

    with pytest.raises(BackfillError, match="Unknown symbol"):
        repair_gaps(start=DAY, end=DAY, symbols=["NOPE"], now=AFTER)
    with pytest.raises(BackfillError, match="after end"):
        repair_gaps(start=DAY, end=DAY - timedelta(days=1), now=AFTER)


def test_repair_gaps_command(stub, dhan_provider, nse, equity):
    ExchangeProviderMappingFactory(exchange=nse, provider=dhan_provider, is_primary=True, priority=10)
    instrument = _nse_instrument("TCS", "11536", exchange=nse, equity=equity, dhan_provider=dhan_provider)
    session = _minutes(_ist_at(9, 15), _ist_at(15, 30))
    _store(instrument, session[1:])
    stub.dhan_minutes("NSE_EQ", "11536", {int(session[0].timestamp()): (1.0, 1.0, 1.0, 1.0, 1)})
    out = io.StringIO()

    call_command("backfill_history", "--repair-gaps", "--start=2024-01-15", "--end=2024-01-15", stdout=out)

    assert "1 minutes missing, 1 filled" in out.getvalue()
    assert PriceHistoryIntraday.objects.filter(instrument=instrument).count() == len(session)


# --- the token bucket -----------------------------------------------------------------------------


def _hammer(bucket, until: float, stamps: list[float]) -> None:
    while True:
        bucket.acquire()
        now = clock.monotonic()
        if now >= until:
            return
        stamps.append(now)


def test_redis_token_bucket_limits_two_workers_together():
    """Two workers, each with its own Redis connection, share 5 requests/s (burst 5)."""
    url = settings.REDIS_URL or "redis://127.0.0.1:6379/15"
    key = f"test:ratelimit:{clock.time_ns()}"
    clients = [redis.Redis.from_url(url) for _ in range(2)]
    try:
        buckets = [RedisTokenBucket(client=client, key=key, rate=5, capacity=5) for client in clients]
        stamps: list[list[float]] = [[], []]
        start = clock.monotonic()
        until = start + 1.5
        threads = [threading.Thread(target=_hammer, args=(b, until, s)) for b, s in zip(buckets, stamps, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        total = len(stamps[0]) + len(stamps[1])
        # At most the burst plus 5/s; and the bucket does not starve anyone.
        assert 5 + 5 * 1.5 - 2 <= total <= 5 + 5 * 1.5 + 1, total
        assert stamps[0] and stamps[1]
        # Past the burst, no second holds more than 5 (+1 for the window edge) requests.
        paced = sorted(stamps[0] + stamps[1])[5:]
        for i, at in enumerate(paced):
            assert sum(1 for other in paced[i:] if other < at + 1.0) <= 6
    finally:
        clients[0].delete(key)
        for client in clients:
            client.close()


def test_local_token_bucket_paces_threads():
    bucket = LocalTokenBucket(rate=10, capacity=2)
    stamps: list[float] = []
    until = clock.monotonic() + 1.0
    threads = [threading.Thread(target=_hammer, args=(bucket, until, stamps)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert 2 + 10 * 1.0 - 2 <= len(stamps) <= 2 + 10 * 1.0 + 1
