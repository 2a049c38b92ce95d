"""factory_boy factories for the exchanges app."""

from __future__ import annotations

import datetime

import factory

from exchanges.models import Exchange, ExchangeHoliday


class ExchangeFactory(factory.django.DjangoModelFactory):
    """A Monday-to-Friday exchange in New York hours without a calendar; override as needed."""

    class Meta:
        model = Exchange

    name = factory.Sequence(lambda n: f"Exchange {n}")
    code = factory.Sequence(lambda n: f"EX{n}")
    timezone = "America/New_York"
    country = "US"
    currency = "USD"
    market_open = datetime.time(9, 30)
    market_close = datetime.time(16, 0)
    is_open_24_hours = False
    calendar_code = ""


class ExchangeHolidayFactory(factory.django.DjangoModelFactory):
    """A full-day closure; set is_closed=False with open_time/close_time for special hours."""

    class Meta:
        model = ExchangeHoliday

    exchange = factory.SubFactory(ExchangeFactory)
    date = factory.Sequence(lambda n: datetime.date(2024, 1, 1) + datetime.timedelta(days=n))
    name = "Holiday"
    is_closed = True
