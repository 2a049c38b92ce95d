"""Exchange validation: time zone, currency, calendar code, hours and unique codes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from exchanges.models import Exchange
from exchanges.tests.factories import ExchangeFactory

pytestmark = pytest.mark.django_db


def build(**overrides) -> Exchange:
    fields = {
        "name": "National Stock Exchange",
        "code": "NSE",
        "timezone": "Asia/Kolkata",
        "currency": "INR",
        "market_open": dt.time(9, 15),
        "market_close": dt.time(15, 30),
    }
    fields.update(overrides)
    return Exchange(**fields)


def errors_of(exchange: Exchange) -> dict:
    with pytest.raises(ValidationError) as caught:
        exchange.full_clean()
    return caught.value.message_dict


def test_valid_exchange_passes():
    build().full_clean()


def test_unknown_time_zone_rejected():
    assert "timezone" in errors_of(build(timezone="Mars/Olympus"))


def test_known_time_zone_accepted():
    exchange = build(timezone="Asia/Kolkata")
    exchange.full_clean()
    assert exchange.timezone == "Asia/Kolkata"


def test_bad_currency_rejected():
    assert "currency" in errors_of(build(currency="XXX1"))


def test_full_clean_accepts_and_upper_cases_lower_case_currency_and_code():
    exchange = build(currency=" inr ", code="nse")
    exchange.full_clean()
    assert (exchange.currency, exchange.code) == ("INR", "NSE")


def test_calendar_code_validated():
    assert "calendar_code" in errors_of(build(calendar_code="NOPE"))
    build(calendar_code="XBOM").full_clean()
    build(calendar_code="").full_clean()


@pytest.mark.parametrize(
    ("market_open", "market_close"),
    [(dt.time(15, 30), dt.time(9, 15)), (dt.time(9, 15), dt.time(9, 15))],
)
def test_open_must_be_before_close(market_open, market_close):
    assert "market_close" in errors_of(build(market_open=market_open, market_close=market_close))


def test_hours_required_unless_24_hours():
    with pytest.raises(ValidationError):
        build(market_open=None, market_close=None).full_clean()
    build(market_open=None, market_close=None, is_open_24_hours=True).full_clean()


def test_duplicate_code_rejected_by_database():
    ExchangeFactory(code="NSE")
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeFactory(code="NSE")
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeFactory(code="nse")
    assert Exchange.objects.filter(code__iexact="nse").count() == 1


def test_duplicate_code_is_a_validation_error_in_full_clean():
    ExchangeFactory(code="NSE")
    with pytest.raises(ValidationError):
        build(code="nse").full_clean()
