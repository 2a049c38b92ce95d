"""Exchanges the selector and API tests share: calendar-backed ones and one described by its row."""

from __future__ import annotations

import datetime as dt

import pytest

from exchanges.tests.factories import ExchangeFactory


@pytest.fixture
def nyse():
    return ExchangeFactory(
        code="NYSE",
        calendar_code="XNYS",
        timezone="America/New_York",
        pre_market_open=dt.time(4, 0),
        market_open=dt.time(9, 30),
        market_close=dt.time(16, 0),
        post_market_close=dt.time(20, 0),
    )


@pytest.fixture
def nse():
    return ExchangeFactory(
        code="NSE",
        calendar_code="XBOM",
        timezone="Asia/Kolkata",
        currency="INR",
        pre_market_open=dt.time(9, 0),
        market_open=dt.time(9, 15),
        market_close=dt.time(15, 30),
    )


@pytest.fixture
def tse():
    return ExchangeFactory(
        code="TSE",
        calendar_code="XTKS",
        timezone="Asia/Tokyo",
        currency="JPY",
        market_open=dt.time(9, 0),
        market_close=dt.time(15, 0),
    )


@pytest.fixture
def local_exchange():
    """An exchange without a calendar: its hours and holiday rows are all there is."""
    return ExchangeFactory(
        code="LOCAL",
        timezone="America/New_York",
        pre_market_open=dt.time(8, 0),
        market_open=dt.time(9, 30),
        market_close=dt.time(16, 0),
    )
