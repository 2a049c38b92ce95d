"""Exchanges, instruments and generated 1-minute sessions shared by the marketdata tests."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory
from marketdata.models import PriceHistoryIntraday


@pytest.fixture
def nasdaq(db):
    return ExchangeFactory(code="NASDAQ", name="Nasdaq", timezone="America/New_York", currency="USD")


@pytest.fixture
def nse(db):
    return ExchangeFactory(
        code="NSE",
        name="National Stock Exchange of India",
        timezone="Asia/Kolkata",
        currency="INR",
        market_open=dt.time(9, 15),
        market_close=dt.time(15, 30),
    )


@pytest.fixture
def bse(db):
    return ExchangeFactory(
        code="BSE",
        name="BSE",
        timezone="Asia/Kolkata",
        currency="INR",
        market_open=dt.time(9, 15),
        market_close=dt.time(15, 30),
    )


@pytest.fixture
def aapl(nasdaq):
    return InstrumentFactory(symbol="AAPL", exchange=nasdaq)


@pytest.fixture
def msft(nasdaq):
    return InstrumentFactory(symbol="MSFT", exchange=nasdaq)


@pytest.fixture
def reliance_nse(nse):
    return InstrumentFactory(symbol="RELIANCE", exchange=nse)


@pytest.fixture
def reliance_bse(bse):
    return InstrumentFactory(symbol="RELIANCE", exchange=bse)


def session_minutes(
    instrument, *, day: dt.date, rng: random.Random, missing: float = 0.1, save: bool = True
) -> list[dict]:
    """Random 1-minute bars over the exchange's session on ``day``, some minutes missing.

    ``previous_close`` is set on every bar, ``adj_close`` and ``delivery_percentage`` on some, so
    the first/last-non-null rules of the aggregation are exercised.
    """
    exchange = instrument.exchange
    zone = ZoneInfo(exchange.timezone)
    at = dt.datetime.combine(day, exchange.market_open, tzinfo=zone).astimezone(dt.UTC)
    close_at = dt.datetime.combine(day, exchange.market_close, tzinfo=zone).astimezone(dt.UTC)
    price = 100.0 + rng.random() * 50
    bars = []
    while at < close_at:
        if rng.random() >= missing:
            open_ = round(price, 2)
            close = round(price + rng.uniform(-1, 1), 2)
            bars.append(
                {
                    "timestamp": at,
                    "open": open_,
                    "high": round(max(open_, close) + rng.random(), 2),
                    "low": round(min(open_, close) - rng.random(), 2),
                    "close": close,
                    "volume": rng.randint(0, 50_000),
                    "previous_close": 99.5,
                    "adj_close": close if rng.random() < 0.3 else None,
                    "delivery_percentage": round(rng.uniform(10, 90), 2) if rng.random() < 0.2 else None,
                }
            )
            price = close
        at += dt.timedelta(minutes=1)
    if save:
        PriceHistoryIntraday.objects.bulk_create(
            PriceHistoryIntraday(instrument=instrument, interval="1m", **bar) for bar in bars
        )
    return bars
