"""factory_boy factories for the ingestion app: providers and their mappings."""

from __future__ import annotations

import factory

from exchanges.tests.factories import ExchangeFactory
from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from instruments.tests.factories import InstrumentFactory


class ProviderFactory(factory.django.DjangoModelFactory):
    """A simulated provider with a unique code and no credentials."""

    class Meta:
        model = Provider

    name = factory.Sequence(lambda n: f"Provider {n}")
    code = factory.Sequence(lambda n: f"P{n}")
    kind = Provider.Kind.SIMULATED
    # Around the clock: a test must not depend on the hour it runs at (the default follows sessions).
    settings = factory.LazyFunction(lambda: {"follow_sessions": False})
    credentials = factory.LazyFunction(dict)


class ExchangeProviderMappingFactory(factory.django.DjangoModelFactory):
    """A non-primary provider of an exchange."""

    class Meta:
        model = ExchangeProviderMapping

    exchange = factory.SubFactory(ExchangeFactory)
    provider = factory.SubFactory(ProviderFactory)
    is_primary = False
    priority = 100


class ProviderInstrumentMappingFactory(factory.django.DjangoModelFactory):
    """How a provider names an instrument; the search code is unique per factory call."""

    class Meta:
        model = ProviderInstrumentMapping

    provider = factory.SubFactory(ProviderFactory)
    instrument = factory.SubFactory(InstrumentFactory)
    search_code = factory.Sequence(lambda n: str(1000 + n))
    segment = ""
