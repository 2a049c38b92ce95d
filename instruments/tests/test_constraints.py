"""Database constraints of instruments, sectors and instrument types."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from exchanges.tests.factories import ExchangeFactory
from instruments.models import Instrument
from instruments.tests.factories import InstrumentFactory, InstrumentTypeFactory, SectorFactory

pytestmark = pytest.mark.django_db


def test_duplicate_exchange_symbol_rejected():
    first = InstrumentFactory(symbol="RELIANCE")
    with pytest.raises(IntegrityError), transaction.atomic():
        InstrumentFactory(symbol="RELIANCE", exchange=first.exchange)
    assert Instrument.objects.filter(symbol="RELIANCE").count() == 1


def test_same_symbol_on_two_exchanges_allowed():
    nse = ExchangeFactory(code="NSE")
    bse = ExchangeFactory(code="BSE")
    InstrumentFactory(symbol="RELIANCE", exchange=nse)
    InstrumentFactory(symbol="RELIANCE", exchange=bse)
    assert set(Instrument.objects.filter(symbol="RELIANCE").values_list("exchange__code", flat=True)) == {"NSE", "BSE"}


def test_sector_name_unique():
    SectorFactory(name="Energy")
    with pytest.raises(IntegrityError), transaction.atomic():
        SectorFactory(name="Energy")


def test_instrument_type_code_unique():
    InstrumentTypeFactory(code="EQ")
    with pytest.raises(IntegrityError), transaction.atomic():
        InstrumentTypeFactory(code="EQ")
