"""factory_boy factories for the instruments app."""

from __future__ import annotations

import factory

from exchanges.tests.factories import ExchangeFactory
from instruments.models import Instrument, InstrumentType, Sector


class InstrumentTypeFactory(factory.django.DjangoModelFactory):
    """An instrument type with a unique code."""

    class Meta:
        model = InstrumentType

    code = factory.Sequence(lambda n: f"T{n}")
    name = factory.Sequence(lambda n: f"Type {n}")


class SectorFactory(factory.django.DjangoModelFactory):
    """A sector with a unique name."""

    class Meta:
        model = Sector

    name = factory.Sequence(lambda n: f"Sector {n}")


class InstrumentFactory(factory.django.DjangoModelFactory):
    """An equity-like instrument on a fresh exchange."""

    class Meta:
        model = Instrument

    symbol = factory.Sequence(lambda n: f"SYM{n}")
    name = factory.Sequence(lambda n: f"Instrument {n}")
    exchange = factory.SubFactory(ExchangeFactory)
    instrument_type = factory.SubFactory(InstrumentTypeFactory)
    sector = factory.SubFactory(SectorFactory)
