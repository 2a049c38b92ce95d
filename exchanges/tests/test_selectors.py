"""Sessions, holidays, early closes and trading dates, from exchange-calendars and from rows."""

from __future__ import annotations

import datetime as dt

import pytest

from exchanges import selectors
from exchanges.selectors import (
    exchange_closures,
    exchange_early_closes,
    exchange_holidays,
    exchange_is_open,
    exchange_session,
    exchange_sessions,
    exchange_trading_date,
)
from exchanges.tests.factories import ExchangeFactory, ExchangeHolidayFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --- exchange-calendars backed -------------------------------------------------------------


def test_nyse_closed_on_christmas(nyse):
    assert exchange_session(exchange=nyse, date=dt.date(2024, 12, 25)) is None
    assert not exchange_is_open(exchange=nyse, at=utc(2024, 12, 25, 15, 0))
    assert dt.date(2024, 12, 25) in exchange_holidays(
        exchange=nyse, start=dt.date(2024, 12, 1), end=dt.date(2024, 12, 31)
    )


def test_nyse_regular_session_instants_and_pre_post_market(nyse):
    session = exchange_session(exchange=nyse, date=dt.date(2024, 1, 16))
    assert session.open == utc(2024, 1, 16, 14, 30)
    assert session.close == utc(2024, 1, 16, 21, 0)
    assert session.pre_market_open == utc(2024, 1, 16, 9, 0)
    assert session.post_market_close == utc(2024, 1, 17, 1, 0)
    assert not session.is_early_close
    # Summer time moves the UTC instants an hour earlier.
    summer = exchange_session(exchange=nyse, date=dt.date(2024, 7, 1))
    assert (summer.open, summer.close) == (utc(2024, 7, 1, 13, 30), utc(2024, 7, 1, 20, 0))


def test_nyse_open_is_inclusive_close_exclusive(nyse):
    assert exchange_is_open(exchange=nyse, at=utc(2024, 1, 16, 14, 30))
    assert not exchange_is_open(exchange=nyse, at=utc(2024, 1, 16, 14, 29, 59))
    assert not exchange_is_open(exchange=nyse, at=utc(2024, 1, 16, 21, 0))
    # Pre-market is not the regular session.
    assert not exchange_is_open(exchange=nyse, at=utc(2024, 1, 16, 12, 0))


def test_nyse_early_close_day_after_thanksgiving(nyse):
    session = exchange_session(exchange=nyse, date=dt.date(2024, 11, 29))
    assert session.close == dt.datetime(2024, 11, 29, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert session.is_early_close
    assert exchange_is_open(exchange=nyse, at=utc(2024, 11, 29, 17, 59))
    assert not exchange_is_open(exchange=nyse, at=utc(2024, 11, 29, 18, 30))
    early = exchange_early_closes(exchange=nyse, start=dt.date(2024, 11, 1), end=dt.date(2024, 12, 31))
    assert [s.date for s in early] == [dt.date(2024, 11, 29), dt.date(2024, 12, 24)]


def test_calendar_hours_win_over_row_hours(nyse):
    nyse.market_open = dt.time(10, 0)
    nyse.market_close = dt.time(15, 0)
    session = exchange_session(exchange=nyse, date=dt.date(2024, 1, 16))
    assert (session.open, session.close) == (utc(2024, 1, 16, 14, 30), utc(2024, 1, 16, 21, 0))


def test_a_closing_row_overrides_the_calendar(nyse):
    ExchangeHolidayFactory(exchange=nyse, date=dt.date(2024, 1, 16), is_closed=True, name="Snow day")
    assert exchange_session(exchange=nyse, date=dt.date(2024, 1, 16)) is None
    assert not exchange_is_open(exchange=nyse, at=utc(2024, 1, 16, 15, 0))
    assert [
        s.date.day for s in exchange_sessions(exchange=nyse, start=dt.date(2024, 1, 16), end=dt.date(2024, 1, 17))
    ] == [17]
    closures = exchange_closures(exchange=nyse, start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 31))
    assert [(h.date, h.name, h.source) for h in closures] == [
        (dt.date(2024, 1, 1), "New Year's Day", "calendar"),
        (dt.date(2024, 1, 15), "Dr. Martin Luther King Jr. Day", "calendar"),
        (dt.date(2024, 1, 16), "Snow day", "override"),
    ]


def test_a_special_hours_row_overrides_the_calendars_hours(nyse):
    ExchangeHolidayFactory(exchange=nyse, date=dt.date(2024, 1, 16), is_closed=False, close_time=dt.time(13, 0))
    session = exchange_session(exchange=nyse, date=dt.date(2024, 1, 16))
    assert (session.open, session.close) == (utc(2024, 1, 16, 14, 30), utc(2024, 1, 16, 18, 0))
    assert session.is_early_close
    assert session.post_market_close == utc(2024, 1, 17, 1, 0)
    assert not exchange_is_open(exchange=nyse, at=utc(2024, 1, 16, 18, 30))


def test_a_row_opens_a_calendar_holiday_and_keeps_its_name_when_closing_one(nyse):
    ExchangeHolidayFactory(exchange=nyse, date=dt.date(2024, 1, 15), is_closed=False)
    ExchangeHolidayFactory(exchange=nyse, date=dt.date(2024, 1, 1), is_closed=True, name="")
    session = exchange_session(exchange=nyse, date=dt.date(2024, 1, 15))
    assert (session.open, session.close) == (utc(2024, 1, 15, 14, 30), utc(2024, 1, 15, 21, 0))
    closures = exchange_closures(exchange=nyse, start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 31))
    assert [(h.date, h.name, h.source) for h in closures] == [(dt.date(2024, 1, 1), "New Year's Day", "override")]


def test_calendar_holidays_without_a_rule_have_no_name(nse):
    closures = exchange_closures(exchange=nse, start=dt.date(2024, 1, 26), end=dt.date(2024, 1, 26))
    assert [(h.date, h.name, h.source) for h in closures] == [(dt.date(2024, 1, 26), None, "calendar")]


def test_nyse_sessions_for_a_range(nyse):
    sessions = exchange_sessions(exchange=nyse, start=dt.date(2024, 12, 21), end=dt.date(2024, 12, 31))
    assert [s.date for s in sessions] == [
        dt.date(2024, 12, 23),
        dt.date(2024, 12, 24),
        dt.date(2024, 12, 26),
        dt.date(2024, 12, 27),
        dt.date(2024, 12, 30),
        dt.date(2024, 12, 31),
    ]
    assert [s.is_early_close for s in sessions] == [False, True, False, False, False, False]


def test_calendar_covers_2000_to_next_year(nyse):
    assert exchange_session(exchange=nyse, date=dt.date(2000, 1, 3)).open == utc(2000, 1, 3, 14, 30)
    next_year = dt.datetime.now(tz=UTC).year + 1
    # The second Tuesday of January is never an NYSE holiday.
    day = dt.date(next_year, 1, 8)
    day += dt.timedelta(days=(1 - day.weekday()) % 7)
    assert exchange_session(exchange=nyse, date=day) is not None


def test_date_before_calendar_range_is_a_value_error(nyse):
    with pytest.raises(ValueError, match="before"):
        exchange_session(exchange=nyse, date=dt.date(1990, 1, 2))
    with pytest.raises(ValueError, match="before"):
        exchange_sessions(exchange=nyse, start=dt.date(1999, 12, 1), end=dt.date(2000, 1, 31))


def test_past_the_calendars_data_the_row_hours_and_holiday_rows_apply(nse):
    """XBOM ships holidays only to the end of 2026: later dates must still have sessions."""
    from exchanges.models import ExchangeHoliday

    kolkata = dt.timezone(dt.timedelta(hours=5, minutes=30))
    monday = dt.date(2030, 1, 7)
    session = exchange_session(exchange=nse, date=monday)
    assert session.open == dt.datetime(2030, 1, 7, 9, 15, tzinfo=kolkata)
    assert exchange_session(exchange=nse, date=dt.date(2030, 1, 5)) is None  # Saturday
    ExchangeHoliday.objects.create(exchange=nse, date=dt.date(2030, 1, 8), name="Test holiday")
    assert exchange_session(exchange=nse, date=dt.date(2030, 1, 8)) is None
    assert exchange_holidays(exchange=nse, start=dt.date(2030, 1, 1), end=dt.date(2030, 1, 10)) == [dt.date(2030, 1, 8)]
    assert exchange_is_open(exchange=nse, at=dt.datetime(2030, 1, 7, 10, 0, tzinfo=kolkata))
    sessions = exchange_sessions(exchange=nse, start=dt.date(2026, 12, 30), end=dt.date(2027, 1, 5))
    assert [s.date for s in sessions][-2:] == [dt.date(2027, 1, 4), dt.date(2027, 1, 5)]


def test_nse_open_on_monday_morning_kolkata(nse):
    kolkata = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert exchange_is_open(exchange=nse, at=dt.datetime(2024, 1, 15, 10, 0, tzinfo=kolkata))
    session = exchange_session(exchange=nse, date=dt.date(2024, 1, 15))
    assert session.open == dt.datetime(2024, 1, 15, 9, 15, tzinfo=kolkata)
    assert session.close == dt.datetime(2024, 1, 15, 15, 30, tzinfo=kolkata)
    assert session.pre_market_open == dt.datetime(2024, 1, 15, 9, 0, tzinfo=kolkata)
    assert session.post_market_close is None
    assert not exchange_is_open(exchange=nse, at=dt.datetime(2024, 1, 15, 9, 5, tzinfo=kolkata))
    assert not exchange_is_open(exchange=nse, at=dt.datetime(2024, 1, 14, 10, 0, tzinfo=kolkata))  # Sunday
    # Republic Day.
    assert dt.date(2024, 1, 26) in exchange_holidays(exchange=nse, start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 31))


def test_tokyo_trading_date_after_midnight_utc(tse):
    assert exchange_trading_date(exchange=tse, at=utc(2024, 1, 15, 0, 30)) == dt.date(2024, 1, 15)
    assert exchange_trading_date(exchange=tse, at=utc(2024, 1, 14, 23, 30)) == dt.date(2024, 1, 15)
    assert exchange_trading_date(exchange=tse, at=utc(2024, 1, 14, 14, 59)) == dt.date(2024, 1, 14)
    # 09:30 Tokyo on Monday 2024-01-15 is inside the session, which is the one labelled 2024-01-15.
    assert exchange_is_open(exchange=tse, at=utc(2024, 1, 15, 0, 30))
    assert exchange_session(exchange=tse, date=dt.date(2024, 1, 15)).open == utc(2024, 1, 15, 0, 0)


def test_tokyo_lunch_break_is_not_open(tse):
    session = exchange_session(exchange=tse, date=dt.date(2024, 1, 15))
    assert (session.break_start, session.break_end) == (utc(2024, 1, 15, 2, 30), utc(2024, 1, 15, 3, 30))
    assert not exchange_is_open(exchange=tse, at=utc(2024, 1, 15, 3, 0))
    assert exchange_is_open(exchange=tse, at=utc(2024, 1, 15, 3, 30))


def test_calendar_is_built_once_per_code(nyse):
    exchange_session(exchange=nyse, date=dt.date(2024, 1, 16))
    before = selectors._calendar_table.cache_info()
    for hour in range(24):
        exchange_is_open(exchange=nyse, at=utc(2024, 1, 16, hour))
    exchange_sessions(exchange=nyse, start=dt.date(2024, 1, 1), end=dt.date(2024, 12, 31))
    after = selectors._calendar_table.cache_info()
    assert after.misses == before.misses
    assert after.hits > before.hits


# --- row-backed exchanges ----------------------------------------------------------------------


def test_row_exchange_regular_weekday_and_weekend(local_exchange):
    session = exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 4))
    assert (session.open, session.close) == (utc(2024, 3, 4, 14, 30), utc(2024, 3, 4, 21, 0))
    assert session.pre_market_open == utc(2024, 3, 4, 13, 0)
    assert exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 2)) is None  # Saturday
    assert exchange_is_open(exchange=local_exchange, at=utc(2024, 3, 4, 15, 0))
    assert not exchange_is_open(exchange=local_exchange, at=utc(2024, 3, 2, 15, 0))
    # After the US switch to summer time (2024-03-10) the same local hours are an hour earlier in UTC.
    summer = exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 11))
    assert summer.open == utc(2024, 3, 11, 13, 30)


def test_row_exchange_closed_holiday(local_exchange):
    ExchangeHolidayFactory(exchange=local_exchange, date=dt.date(2024, 3, 5), is_closed=True)
    assert exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 5)) is None
    assert not exchange_is_open(exchange=local_exchange, at=utc(2024, 3, 5, 15, 0))
    assert exchange_holidays(exchange=local_exchange, start=dt.date(2024, 3, 1), end=dt.date(2024, 3, 31)) == [
        dt.date(2024, 3, 5)
    ]
    sessions = exchange_sessions(exchange=local_exchange, start=dt.date(2024, 3, 4), end=dt.date(2024, 3, 8))
    assert [s.date.day for s in sessions] == [4, 6, 7, 8]


def test_row_exchange_special_hours(local_exchange):
    ExchangeHolidayFactory(
        exchange=local_exchange, date=dt.date(2024, 3, 6), is_closed=False, close_time=dt.time(13, 0)
    )
    session = exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 6))
    assert (session.open, session.close) == (utc(2024, 3, 6, 14, 30), utc(2024, 3, 6, 18, 0))
    assert session.is_early_close
    assert not exchange_is_open(exchange=local_exchange, at=utc(2024, 3, 6, 19, 0))
    early = exchange_early_closes(exchange=local_exchange, start=dt.date(2024, 3, 1), end=dt.date(2024, 3, 31))
    assert [s.date for s in early] == [dt.date(2024, 3, 6)]
    assert exchange_holidays(exchange=local_exchange, start=dt.date(2024, 3, 1), end=dt.date(2024, 3, 31)) == []


def test_row_exchange_special_session_on_a_weekend(local_exchange):
    ExchangeHolidayFactory(
        exchange=local_exchange,
        date=dt.date(2024, 3, 9),
        is_closed=False,
        open_time=dt.time(18, 0),
        close_time=dt.time(19, 0),
    )
    session = exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 9))
    assert (session.open, session.close) == (utc(2024, 3, 9, 23, 0), utc(2024, 3, 10, 0, 0))
    assert not session.is_early_close


def test_inactive_holiday_row_is_ignored(local_exchange):
    ExchangeHolidayFactory(exchange=local_exchange, date=dt.date(2024, 3, 5), is_closed=True, is_active=False)
    assert exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 5)) is not None


def test_holiday_rows_of_other_exchanges_do_not_apply(local_exchange):
    ExchangeHolidayFactory(date=dt.date(2024, 3, 5), is_closed=True)
    assert exchange_session(exchange=local_exchange, date=dt.date(2024, 3, 5)) is not None


def test_24_hour_exchange_session_is_the_whole_local_day():
    crypto = ExchangeFactory(
        code="CRYPTO", timezone="Asia/Kolkata", is_open_24_hours=True, market_open=None, market_close=None
    )
    session = exchange_session(exchange=crypto, date=dt.date(2024, 1, 13))  # a Saturday
    assert session.open == utc(2024, 1, 12, 18, 30)
    assert session.close == utc(2024, 1, 13, 18, 30)
    assert session.pre_market_open is None
    assert exchange_is_open(exchange=crypto, at=utc(2024, 1, 13, 3, 0))
    assert exchange_is_open(exchange=crypto, at=utc(2024, 1, 12, 18, 30))
    assert len(exchange_sessions(exchange=crypto, start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 31))) == 31
    ExchangeHolidayFactory(exchange=crypto, date=dt.date(2024, 1, 14), is_closed=True)
    assert exchange_session(exchange=crypto, date=dt.date(2024, 1, 14)) is None
    assert exchange_holidays(exchange=crypto, start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 31)) == [
        dt.date(2024, 1, 14)
    ]


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("calendar_code", ["", "XNYS"])
def test_naive_datetimes_are_rejected(calendar_code):
    exchange = ExchangeFactory(calendar_code=calendar_code)
    naive = dt.datetime(2024, 1, 16, 15, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="Naive"):
        exchange_is_open(exchange=exchange, at=naive)
    with pytest.raises(ValueError, match="Naive"):
        exchange_trading_date(exchange=exchange, at=naive)


def test_datetime_for_a_date_and_reversed_range_are_rejected(local_exchange):
    with pytest.raises(ValueError, match="must be a date"):
        exchange_session(exchange=local_exchange, date=utc(2024, 1, 16, 15, 0))
    with pytest.raises(ValueError, match="after end"):
        exchange_sessions(exchange=local_exchange, start=dt.date(2024, 2, 1), end=dt.date(2024, 1, 1))
