"""The daily rollup: closed sessions' 1-minute bars into daily bars, in each exchange's own time zone."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from exchanges.selectors import exchange_session
from exchanges.tests.factories import ExchangeFactory
from ingestion.rollup import _rollup_python, rollup_day, rollup_due, session_window
from ingestion.tests.factories import ProviderFactory
from instruments.tests.factories import InstrumentFactory
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday
from marketdata.tests.factories import PriceHistoryDailyFactory, PriceHistoryIntradayFactory

pytestmark = pytest.mark.django_db

IST = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY = date(2024, 1, 15)  # a trading day on the Bombay calendar
DAILY_FIELDS = ("open", "high", "low", "close", "volume", "previous_close")


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


def _ist(day: date, hh: int, mm: int) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=IST).astimezone(UTC)


def _bar(instrument, at: datetime, open_: float, high: float, low: float, close: float, volume: int):
    return PriceHistoryIntradayFactory(
        instrument=instrument, timestamp=at, open=open_, high=high, low=low, close=close, volume=volume
    )


def _random_day(instrument, day: date, rng: random.Random) -> list[PriceHistoryIntraday]:
    """Bars at random minutes from 08:50 to 16:10 IST, so some fall outside the session."""
    minutes = sorted(rng.sample(range(8 * 60 + 50, 16 * 60 + 10), 60))
    bars = []
    for minute in minutes:
        open_ = round(rng.uniform(90, 110), 2)
        close = round(rng.uniform(90, 110), 2)
        bars.append(
            _bar(
                instrument,
                _ist(day, minute // 60, minute % 60),
                open_,
                max(open_, close) + round(rng.uniform(0, 2), 2),
                min(open_, close) - round(rng.uniform(0, 2), 2),
                close,
                rng.randint(0, 10_000),
            )
        )
    return bars


def _expected(bars: list[PriceHistoryIntraday], previous_close: float | None) -> tuple:
    """The daily bar of ``bars``' regular-session minutes (09:15 <= IST time < 15:30), aggregated here."""
    inside = sorted(
        (b for b in bars if time(9, 15) <= b.timestamp.astimezone(IST).time() < time(15, 30)),
        key=lambda b: b.timestamp,
    )
    return (
        inside[0].open,
        max(b.high for b in inside),
        min(b.low for b in inside),
        inside[-1].close,
        sum(b.volume for b in inside),
        previous_close,
    )


def _daily(instrument, day: date) -> tuple:
    return PriceHistoryDaily.objects.filter(instrument=instrument, date=day).values_list(*DAILY_FIELDS).get()


def test_rollup_equals_an_independent_aggregation(nse):
    rng = random.Random(20240115)
    instruments = [InstrumentFactory(exchange=nse) for _ in range(3)]
    bars = {i.pk: _random_day(i, MONDAY, rng) for i in instruments}
    PriceHistoryDailyFactory(instrument=instruments[0], date=date(2024, 1, 12), close=97.5)
    # A bar of another exchange in the same hours stays out of NSE's rollup.
    other = InstrumentFactory()
    _bar(other, _ist(MONDAY, 10, 0), 1, 1, 1, 1, 1)

    written = rollup_day(exchange=nse, date=MONDAY)

    assert written == 3
    for instrument in instruments:
        previous = 97.5 if instrument == instruments[0] else None
        assert _daily(instrument, MONDAY) == pytest.approx(_expected(bars[instrument.pk], previous))
        assert PriceHistoryDaily.objects.get(instrument=instrument, date=MONDAY).from_rollup is True
    assert not PriceHistoryDaily.objects.filter(instrument=other).exists()

    # The Python twin (SQLite, the embedded mode) gives the same rows.
    sql_rows = {i.pk: _daily(i, MONDAY) for i in instruments}
    PriceHistoryDaily.objects.filter(date=MONDAY).delete()
    session_bounds = session_window(exchange=nse, session=exchange_session(exchange=nse, date=MONDAY))
    with transaction.atomic():
        assert _rollup_python(exchange=nse, day=MONDAY, window=session_bounds, now=datetime.now(UTC)) == 3
    assert {i.pk: _daily(i, MONDAY) for i in instruments} == sql_rows


def test_nse_session_boundaries_are_ist_open_inclusive_close_exclusive(nse):
    instrument = InstrumentFactory(exchange=nse)
    _bar(instrument, _ist(MONDAY, 9, 14), 50, 200, 1, 50, 7)  # pre-open
    _bar(instrument, _ist(MONDAY, 9, 15), 100, 101, 99, 100.5, 10)  # 03:45 UTC: the open
    _bar(instrument, _ist(MONDAY, 15, 29), 102, 103, 101, 102.5, 20)  # the last minute
    _bar(instrument, _ist(MONDAY, 15, 30), 60, 300, 2, 60, 9)  # closing session, after the close
    assert _ist(MONDAY, 9, 15) == datetime(2024, 1, 15, 3, 45, tzinfo=UTC)

    rollup_day(exchange=nse, date=MONDAY)

    assert _daily(instrument, MONDAY) == (100, 103, 99, 102.5, 30, None)


def test_a_24_hour_exchange_rolls_up_its_whole_local_day():
    exchange = ExchangeFactory(
        code="X24", timezone="America/New_York", is_open_24_hours=True, market_open=None, market_close=None
    )
    instrument = InstrumentFactory(exchange=exchange)
    local = [
        (datetime(2024, 1, 14, 23, 59, tzinfo=NEW_YORK), 1.0),  # the day before
        (datetime(2024, 1, 15, 0, 0, tzinfo=NEW_YORK), 10.0),  # 05:00 UTC: the first minute
        (datetime(2024, 1, 15, 12, 0, tzinfo=NEW_YORK), 12.0),
        (datetime(2024, 1, 15, 23, 59, tzinfo=NEW_YORK), 11.0),  # 04:59 UTC next day: the last minute
        (datetime(2024, 1, 16, 0, 0, tzinfo=NEW_YORK), 2.0),  # the day after
    ]
    for at, price in local:
        _bar(instrument, at.astimezone(UTC), price, price, price, price, 1)
    # Sunday is a trading day around the clock.
    _bar(instrument, datetime(2024, 1, 14, 12, 0, tzinfo=NEW_YORK).astimezone(UTC), 5, 5, 5, 5, 1)

    assert rollup_day(exchange=exchange, date=MONDAY) == 1
    assert _daily(instrument, MONDAY) == (10.0, 12.0, 10.0, 11.0, 3, None)
    assert rollup_day(exchange=exchange, date=date(2024, 1, 14)) == 1
    assert _daily(instrument, date(2024, 1, 14))[4] == 2


def test_provider_daily_history_is_never_overwritten(nse):
    provider = ProviderFactory(code="YFX")
    from_provider = InstrumentFactory(exchange=nse)
    typed_in = InstrumentFactory(exchange=nse)
    rolled = InstrumentFactory(exchange=nse)
    for instrument in (from_provider, typed_in, rolled):
        _bar(instrument, _ist(MONDAY, 10, 0), 100, 110, 90, 105, 500)
    kept = PriceHistoryDailyFactory(
        instrument=from_provider,
        date=MONDAY,
        open=1,
        high=2,
        low=0.5,
        close=1.5,
        volume=42,
        adj_close=1.4,
        dividend=0.1,
        split=2.0,
        source_id=provider.pk,
        from_rollup=False,
    )
    manual = PriceHistoryDailyFactory(instrument=typed_in, date=MONDAY, close=7.0, from_rollup=False)
    stale = PriceHistoryDailyFactory(instrument=rolled, date=MONDAY, close=1.0, from_rollup=True)

    written = rollup_day(exchange=nse, date=MONDAY)

    assert written == 1
    kept_after = PriceHistoryDaily.objects.get(pk=kept.pk)
    assert (kept_after.close, kept_after.volume, kept_after.adj_close, kept_after.dividend, kept_after.split) == (
        1.5,
        42,
        1.4,
        0.1,
        2.0,
    )
    assert kept_after.updated_at == kept.updated_at and kept_after.source_id == provider.pk
    assert PriceHistoryDaily.objects.get(pk=manual.pk).close == 7.0
    assert PriceHistoryDaily.objects.get(pk=stale.pk).close == 105


def test_rollup_due_rolls_closed_sessions_once_and_again_after_changes(nse):
    instrument = InstrumentFactory(exchange=nse)
    bar = _bar(instrument, _ist(MONDAY, 10, 0), 100, 110, 90, 105, 500)
    _bar(instrument, _ist(MONDAY + timedelta(days=1), 10, 0), 200, 210, 190, 205, 5)
    # Tuesday 15:35 IST: Monday closed long ago, Tuesday's close is within the grace period.
    now = _ist(MONDAY + timedelta(days=1), 15, 35)

    first = rollup_due(now=now)

    assert first == {"rolled": [{"exchange": "NSE", "date": "2024-01-15", "rows": 1}], "errors": []}
    assert not PriceHistoryDaily.objects.filter(date=MONDAY + timedelta(days=1)).exists()
    assert rollup_due(now=now)["rolled"] == []

    bar.close = 107
    bar.save()  # a late correction (backfill, gap repair) after the rollup
    assert rollup_due(now=now)["rolled"] == [{"exchange": "NSE", "date": "2024-01-15", "rows": 1}]
    assert _daily(instrument, MONDAY)[3] == 107

    later = rollup_due(now=_ist(MONDAY + timedelta(days=1), 16, 0))
    assert later["rolled"] == [{"exchange": "NSE", "date": "2024-01-16", "rows": 1}]
    assert _daily(instrument, MONDAY + timedelta(days=1))[5] == 107  # previous_close: Monday's close


def test_rollup_daily_command(nse):
    instrument = InstrumentFactory(exchange=nse)
    _bar(instrument, _ist(MONDAY, 10, 0), 100, 110, 90, 105, 500)
    out = io.StringIO()

    call_command("rollup_daily", "--exchange=nse", "--date=2024-01-15", stdout=out)

    assert "NSE 2024-01-15: 1 daily bars" in out.getvalue()
    assert _daily(instrument, MONDAY) == (100, 110, 90, 105, 500, None)
    with pytest.raises(CommandError, match="not a valid date"):
        call_command("rollup_daily", "--date=2024-13-01")
    with pytest.raises(CommandError, match="Unknown exchange"):
        call_command("rollup_daily", "--exchange=NOPE")
    ExchangeFactory(code="NYX")  # Monday to Friday, no holidays: a session on every weekday
    upcoming = datetime.now(NEW_YORK).date() + timedelta(days=2)
    while upcoming.weekday() >= 5:
        upcoming += timedelta(days=1)
    with pytest.raises(CommandError, match="not closed"):
        call_command("rollup_daily", "--exchange=NYX", f"--date={upcoming}")
