"""factory_boy factories for the marketdata app."""

from __future__ import annotations

import datetime as dt

import factory

from instruments.tests.factories import InstrumentFactory
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday


class PriceHistoryIntradayFactory(factory.django.DjangoModelFactory):
    """A stored 1-minute bar; consecutive bars of a sequence are one minute apart."""

    class Meta:
        model = PriceHistoryIntraday

    instrument = factory.SubFactory(InstrumentFactory)
    interval = "1m"
    timestamp = factory.Sequence(lambda n: dt.datetime(2024, 1, 15, 14, 30, tzinfo=dt.UTC) + dt.timedelta(minutes=n))
    open = 100.0
    high = factory.LazyAttribute(lambda bar: max(bar.open, bar.close) + 0.5)
    low = factory.LazyAttribute(lambda bar: min(bar.open, bar.close) - 0.5)
    close = 100.25
    volume = 1000


class PriceHistoryDailyFactory(factory.django.DjangoModelFactory):
    """A daily bar; consecutive bars of a sequence are one calendar day apart."""

    class Meta:
        model = PriceHistoryDaily

    instrument = factory.SubFactory(InstrumentFactory)
    date = factory.Sequence(lambda n: dt.date(2024, 1, 1) + dt.timedelta(days=n))
    open = 100.0
    high = factory.LazyAttribute(lambda bar: max(bar.open, bar.close) + 1.0)
    low = factory.LazyAttribute(lambda bar: min(bar.open, bar.close) - 1.0)
    close = 101.0
    volume = 1_000_000
