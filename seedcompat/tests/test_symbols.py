"""The compat symbol: one string per instrument, bare when unique, ``SYMBOL.EXCHANGE`` when shared."""

from __future__ import annotations

import pytest

from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory
from seedcompat.symbols import (
    AmbiguousSymbolError,
    InstrumentNotFoundError,
    compat_symbol,
    compat_symbols,
    instrument_for_compat_symbol,
    instruments_for_compat_symbols,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def nse():
    return ExchangeFactory(code="NSE")


@pytest.fixture
def bse():
    return ExchangeFactory(code="BSE")


def test_unique_symbol_is_bare_and_resolves(nse):
    aapl = InstrumentFactory(symbol="AAPL", exchange=nse)
    assert compat_symbol(aapl) == "AAPL"
    assert instrument_for_compat_symbol("AAPL") == aapl
    assert instrument_for_compat_symbol("aapl") == aapl
    assert instrument_for_compat_symbol("NSE:AAPL") == aapl
    assert instrument_for_compat_symbol("AAPL.NSE") == aapl


def test_shared_symbol_gets_exchange_suffix_and_round_trips(nse, bse):
    a = InstrumentFactory(symbol="XYZ", exchange=nse)
    b = InstrumentFactory(symbol="XYZ", exchange=bse)
    assert compat_symbol(a) == "XYZ.NSE"
    assert compat_symbol(b) == "XYZ.BSE"
    assert instrument_for_compat_symbol("XYZ.NSE") == a
    assert instrument_for_compat_symbol("xyz.bse") == b
    assert instrument_for_compat_symbol("BSE:XYZ") == b
    with pytest.raises(AmbiguousSymbolError) as err:
        instrument_for_compat_symbol("XYZ")
    assert "BSE" in str(err.value) and "NSE" in str(err.value)


def test_hidden_twin_does_not_rename_the_visible_one(nse, bse):
    live = InstrumentFactory(symbol="XYZ", exchange=nse)
    hidden = InstrumentFactory(symbol="XYZ", exchange=bse, is_active=False)
    assert compat_symbol(live) == "XYZ"
    assert compat_symbol(hidden) == "XYZ.BSE"
    assert instrument_for_compat_symbol("XYZ") == live
    assert instrument_for_compat_symbol("XYZ", include_inactive=True) == live
    with pytest.raises(InstrumentNotFoundError):
        instrument_for_compat_symbol("XYZ.BSE")
    assert instrument_for_compat_symbol("XYZ.BSE", include_inactive=True) == hidden


def test_inactive_exchange_hides_its_instruments(nse):
    closed = ExchangeFactory(code="OLD", is_active=False)
    inst = InstrumentFactory(symbol="QQQ", exchange=closed)
    with pytest.raises(InstrumentNotFoundError):
        instrument_for_compat_symbol("QQQ")
    assert instrument_for_compat_symbol("QQQ", include_inactive=True) == inst


def test_symbols_with_dots_carets_and_ampersands(nse, bse):
    brk = InstrumentFactory(symbol="BRK.B", exchange=nse)
    idx = InstrumentFactory(symbol="^NSEI", exchange=nse)
    mm = InstrumentFactory(symbol="M&M", exchange=nse)
    InstrumentFactory(symbol="M&M", exchange=bse)
    assert compat_symbol(brk) == "BRK.B"
    assert instrument_for_compat_symbol("BRK.B") == brk
    assert instrument_for_compat_symbol("^NSEI") == idx
    assert compat_symbol(mm) == "M&M.NSE"
    assert instrument_for_compat_symbol("M&M.NSE") == mm


def test_exact_symbol_wins_over_the_suffix_split(nse, bse):
    literal = InstrumentFactory(symbol="ABC.BSE", exchange=nse)
    InstrumentFactory(symbol="ABC", exchange=bse)
    assert instrument_for_compat_symbol("ABC.BSE") == literal


@pytest.mark.parametrize("text", ["", "  ", "NOPE", "NOPE.NSE", "ZZZ:NOPE", "A\x00B"])
def test_unknown_symbols_raise_not_found(nse, text):
    with pytest.raises(InstrumentNotFoundError):
        instrument_for_compat_symbol(text)


def test_batch_helpers_do_not_query_per_item(nse, bse, django_assert_max_num_queries):
    a = InstrumentFactory(symbol="XYZ", exchange=nse)
    b = InstrumentFactory(symbol="XYZ", exchange=bse)
    c = InstrumentFactory(symbol="SOLO", exchange=nse)
    items = list(type(a).objects.filter(pk__in=[a.pk, b.pk, c.pk]))
    with django_assert_max_num_queries(1):
        names = compat_symbols(items)
    assert names == {a.pk: "XYZ.NSE", b.pk: "XYZ.BSE", c.pk: "SOLO"}
    with django_assert_max_num_queries(1):  # every string matches a stored symbol exactly
        assert instruments_for_compat_symbols(["XYZ.NSE", "SOLO"]) == {"XYZ.NSE": a, "SOLO": c}
    with django_assert_max_num_queries(2):  # plus one case-insensitive pass for the rest
        found = instruments_for_compat_symbols(["XYZ.NSE", "XYZ.BSE", "SOLO", "XYZ", "NOPE"])
    assert found == {"XYZ.NSE": a, "XYZ.BSE": b, "SOLO": c}
    assert compat_symbols([]) == {}
