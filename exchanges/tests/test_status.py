"""``exchange_status``: open / closed / pre_market / post_market at fixed instants, next open and close."""

from __future__ import annotations

import datetime as dt

import pytest

from exchanges.selectors import exchange_is_open
from exchanges.status import exchange_status
from exchanges.tests.factories import ExchangeFactory, ExchangeHolidayFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_nyse_on_christmas_is_closed_for_it(nyse):
    status = exchange_status(exchange=nyse, at=utc(2024, 12, 25, 15, 0))

    assert status.status == "closed"
    assert status.holiday is not None
    assert (status.holiday.date, status.holiday.name) == (dt.date(2024, 12, 25), "Christmas")
    assert status.session is None
    assert status.next_open == utc(2024, 12, 26, 14, 30)
    assert status.next_close == utc(2024, 12, 26, 21, 0)
    assert status.local_time.isoformat() == "2024-12-25T10:00:00-05:00"
    assert status.trading_date == dt.date(2024, 12, 25)


def test_nse_monday_morning_is_open(nse):
    status = exchange_status(exchange=nse, at=dt.datetime(2024, 1, 15, 10, 0, tzinfo=IST))

    assert status.status == "open"
    assert status.session.date == dt.date(2024, 1, 15)
    assert status.next_close == dt.datetime(2024, 1, 15, 15, 30, tzinfo=IST)
    assert status.next_open == dt.datetime(2024, 1, 16, 9, 15, tzinfo=IST)
    assert status.holiday is None
    assert status.local_time.utcoffset() == dt.timedelta(hours=5, minutes=30)


def test_nse_pre_market_window(nse):
    status = exchange_status(exchange=nse, at=dt.datetime(2024, 1, 15, 9, 5, tzinfo=IST))

    assert status.status == "pre_market"
    assert status.session.date == dt.date(2024, 1, 15)
    assert status.next_open == dt.datetime(2024, 1, 15, 9, 15, tzinfo=IST)
    assert status.next_close == dt.datetime(2024, 1, 15, 15, 30, tzinfo=IST)


def test_nse_after_the_close_without_post_market_is_closed(nse):
    status = exchange_status(exchange=nse, at=dt.datetime(2024, 1, 15, 16, 0, tzinfo=IST))

    assert status.status == "closed"
    assert status.session.date == dt.date(2024, 1, 15)  # today's session, already over
    assert status.holiday is None


def test_nyse_post_market_window_and_after_it(nyse):
    evening = exchange_status(exchange=nyse, at=utc(2024, 1, 16, 22, 0))  # 17:00 New York
    assert evening.status == "post_market"
    assert evening.next_open == utc(2024, 1, 17, 14, 30)

    night = exchange_status(exchange=nyse, at=utc(2024, 1, 17, 2, 0))  # 21:00 New York
    assert night.status == "closed"
    assert night.trading_date == dt.date(2024, 1, 16)
    assert night.session.date == dt.date(2024, 1, 16)


def test_nyse_boundaries_open_inclusive_close_exclusive(nyse):
    assert exchange_status(exchange=nyse, at=utc(2024, 1, 16, 14, 30)).status == "open"
    assert exchange_status(exchange=nyse, at=utc(2024, 1, 16, 14, 29, 59)).status == "pre_market"
    assert exchange_status(exchange=nyse, at=utc(2024, 1, 16, 21, 0)).status == "post_market"
    assert exchange_status(exchange=nyse, at=utc(2024, 1, 16, 9, 0)).status == "pre_market"  # 04:00 New York
    assert exchange_status(exchange=nyse, at=utc(2024, 1, 16, 8, 59)).status == "closed"


def test_nyse_early_close_then_post_market(nyse):
    status = exchange_status(exchange=nyse, at=utc(2024, 11, 29, 18, 30))  # 13:30, closed at 13:00

    assert status.status == "post_market"
    assert status.session.is_early_close
    assert status.session.close == utc(2024, 11, 29, 18, 0)


def test_nyse_weekend_is_closed_without_a_holiday(nyse):
    status = exchange_status(exchange=nyse, at=utc(2024, 1, 13, 15, 0))  # Saturday

    assert status.status == "closed"
    assert status.holiday is None
    assert status.session is None
    assert status.next_open == utc(2024, 1, 16, 14, 30)  # Monday the 15th is Martin Luther King Day


def test_tokyo_lunch_break_is_closed_and_reopens(tse):
    status = exchange_status(exchange=tse, at=utc(2024, 1, 15, 3, 0))

    assert status.status == "closed"
    assert status.session.date == dt.date(2024, 1, 15)
    assert status.next_open == status.session.break_end
    assert status.next_close == status.session.close


def test_an_operator_closure_is_todays_holiday(local_exchange):
    ExchangeHolidayFactory(exchange=local_exchange, date=dt.date(2024, 3, 5), name="Election day")

    status = exchange_status(exchange=local_exchange, at=utc(2024, 3, 5, 15, 0))

    assert status.status == "closed"
    assert (status.holiday.name, status.holiday.source) == ("Election day", "override")
    assert status.next_open == utc(2024, 3, 6, 14, 30)


def test_a_24_hour_exchange_has_no_close_unless_one_is_scheduled():
    crypto = ExchangeFactory(code="CRYPTO", timezone="UTC", is_open_24_hours=True, market_open=None, market_close=None)

    status = exchange_status(exchange=crypto, at=utc(2024, 1, 10, 12, 0))
    assert status.status == "open"
    assert (status.next_open, status.next_close) == (None, None)

    ExchangeHolidayFactory(exchange=crypto, date=dt.date(2024, 1, 13))
    status = exchange_status(exchange=crypto, at=utc(2024, 1, 10, 12, 0))
    assert (status.next_close, status.next_open) == (utc(2024, 1, 13), utc(2024, 1, 14))


@pytest.mark.parametrize("fixture", ["nyse", "tse", "nse", "local_exchange"])
def test_open_exactly_when_the_ingestion_says_so(request, fixture):
    exchange = request.getfixturevalue(fixture)
    ExchangeHolidayFactory(exchange=exchange, date=dt.date(2024, 3, 13), is_closed=False, close_time=dt.time(12, 0))
    at = utc(2024, 3, 10)
    while at < utc(2024, 3, 17):
        expected = exchange_is_open(exchange=exchange, at=at)
        assert (exchange_status(exchange=exchange, at=at).status == "open") is expected, at
        at += dt.timedelta(minutes=15)


def test_naive_instant_is_a_value_error(nyse):
    with pytest.raises(ValueError, match="Naive"):
        exchange_status(exchange=nyse, at=dt.datetime(2024, 1, 16, 15, 0))  # noqa: DTZ001
