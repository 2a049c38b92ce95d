"""Instrument importers: Dhan scrip master and plain CSV, from files and URLs, row by row."""

from __future__ import annotations

import functools
import io
import threading
from datetime import date
from decimal import Decimal
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ingestion.models import ProviderInstrumentMapping
from ingestion.seeding import reference_data_seed
from instruments.importers import instruments_import, isin_is_valid
from instruments.models import Instrument, Sector

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
SCRIP_MASTER = FIXTURES / "dhan_scrip_master.csv"
DHAN_HEADER = SCRIP_MASTER.read_text().splitlines()[0]
DEFAULT_SCOPE = {
    ("NSE", "RELIANCE", "EQ"),
    ("NSE", "HDFCBANK", "EQ"),
    ("NSE", "INFY", "EQ"),
    ("NSE", "TCS", "EQ"),
    ("BSE", "RELIANCE", "EQ"),
    ("BSE", "TCS", "EQ"),
    ("NSE", "NIFTY", "INDEX"),
    ("NSE", "BANKNIFTY", "INDEX"),
    ("BSE", "SENSEX", "INDEX"),
}
DERIVATIVES = {
    ("NSE", "NIFTY-Dec2024-FUT", "FUT"),
    ("NSE", "NIFTY-Dec2024-24500-CE", "OPT"),
    ("NSE", "RELIANCE-Dec2024-1300-PE", "OPT"),
}
MALFORMED = [
    "line 17: bad security id '12AB'",
    "line 18: missing trading symbol",
    "line 19: unknown exchange 'XYZ'",
    "line 20: expected 16 columns, got 6",
]


@pytest.fixture
def reference():
    reference_data_seed()


def _import(source, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_instruments", str(source), "--no-progress", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _instruments() -> set[tuple[str, str, str]]:
    return set(Instrument.objects.values_list("exchange__code", "symbol", "instrument_type__code"))


def _mappings(exchange: str, symbol: str) -> dict[str, tuple[str, str]]:
    rows = ProviderInstrumentMapping.objects.filter(instrument__exchange__code=exchange, instrument__symbol=symbol)
    return {m.provider.code: (m.segment, m.search_code) for m in rows.select_related("provider")}


def test_dhan_import_equities_and_indices(reference):
    out, err = _import(SCRIP_MASTER)

    assert _instruments() == DEFAULT_SCOPE
    assert "Import finished: 9 created, 0 updated, 0 unchanged, 7 skipped, 4 malformed." in out
    assert err.splitlines() == MALFORMED

    reliance = Instrument.objects.get(exchange__code="NSE", symbol="RELIANCE")
    assert reliance.name == "RELIANCE INDUSTRIES LTD"
    assert reliance.tick_size == Decimal("0.10")  # 10.0000 paise
    assert reliance.lot_size == 1
    assert reliance.record_data is False
    assert _mappings("NSE", "RELIANCE") == {"DHAN": ("NSE_EQ", "2885"), "YF": ("", "RELIANCE.NS")}
    assert Instrument.objects.get(exchange__code="NSE", symbol="HDFCBANK").tick_size == Decimal("0.05")
    assert _mappings("NSE", "INFY") == {"DHAN": ("NSE_EQ", "1594"), "YF": ("", "INFY.NS")}
    assert _mappings("BSE", "RELIANCE") == {"DHAN": ("BSE_EQ", "500325"), "YF": ("", "RELIANCE.BO")}

    nifty = Instrument.objects.get(exchange__code="NSE", symbol="NIFTY")
    assert nifty.name == "Nifty 50" and nifty.tick_size == Decimal("0.01")
    assert _mappings("NSE", "NIFTY") == {"DHAN": ("IDX_I", "13"), "YF": ("", "^NSEI")}
    assert _mappings("BSE", "SENSEX") == {"DHAN": ("IDX_I", "51"), "YF": ("", "^BSESN")}


def test_dhan_import_with_derivatives(reference):
    out, err = _import(SCRIP_MASTER, "--derivatives")

    assert _instruments() == DEFAULT_SCOPE | DERIVATIVES
    assert "12 created, 0 updated, 0 unchanged, 3 skipped, 5 malformed" in out
    assert err.splitlines() == [*MALFORMED, "line 21: bad expiry date '26/12/2024'"]

    future = Instrument.objects.get(symbol="NIFTY-Dec2024-FUT")
    assert (future.expiry, future.lot_size, future.strike, future.option_type) == (date(2024, 12, 26), 75, None, "")
    assert future.tick_size == Decimal("0.10")
    assert future.name == "NIFTY DEC FUT"
    assert _mappings("NSE", "NIFTY-Dec2024-FUT") == {"DHAN": ("NSE_FNO", "35001")}  # Yahoo has no Indian F&O
    call = Instrument.objects.get(symbol="NIFTY-Dec2024-24500-CE")
    assert (call.strike, call.option_type, call.lot_size) == (Decimal("24500"), "CE", 75)
    put = Instrument.objects.get(symbol="RELIANCE-Dec2024-1300-PE")
    assert (put.strike, put.option_type, put.lot_size) == (Decimal("1300"), "PE", 500)


def test_dhan_reimport_is_idempotent(reference):
    _import(SCRIP_MASTER, "--derivatives")
    instruments = list(Instrument.objects.values_list("id", "updated_at").order_by("id"))
    mappings = list(ProviderInstrumentMapping.objects.values_list("id", "instrument_id", "search_code").order_by("id"))

    out, _ = _import(SCRIP_MASTER, "--derivatives")

    assert "0 created, 0 updated, 12 unchanged, 3 skipped, 5 malformed" in out
    assert list(Instrument.objects.values_list("id", "updated_at").order_by("id")) == instruments
    assert (
        list(ProviderInstrumentMapping.objects.values_list("id", "instrument_id", "search_code").order_by("id"))
        == mappings
    )


def test_dhan_reimport_restores_values_the_scrip_master_owns(reference):
    _import(SCRIP_MASTER)
    Instrument.objects.filter(exchange__code="NSE", symbol="INFY").update(tick_size="1", record_data=True)
    ProviderInstrumentMapping.objects.filter(provider__code="YF", instrument__symbol="HDFCBANK").delete()

    out, _ = _import(SCRIP_MASTER)

    infy = Instrument.objects.get(exchange__code="NSE", symbol="INFY")
    assert infy.tick_size == Decimal("0.10")
    assert infy.record_data is True  # the operator's choice stays
    assert _mappings("NSE", "HDFCBANK") == {"DHAN": ("NSE_EQ", "1333"), "YF": ("", "HDFCBANK.NS")}
    assert "0 created, 2 updated, 7 unchanged" in out


def test_renamed_symbol_takes_its_security_id_along(reference, tmp_path):
    _import(SCRIP_MASTER)
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(
        f"{DHAN_HEADER}\nNSE,E,1594,EQUITY,0,INFOSYS,1.0,Infosys,,-0.01000,,10.0000,NA,ES,EQ,INFOSYS LIMITED\n"
    )

    _import(renamed)

    assert _mappings("NSE", "INFOSYS") == {"DHAN": ("NSE_EQ", "1594"), "YF": ("", "INFOSYS.NS")}
    assert _mappings("NSE", "INFY") == {"YF": ("", "INFY.NS")}


def test_a_row_failing_half_way_leaves_nothing_behind(reference, tmp_path):
    # 62 characters fit Instrument.symbol (64) but not the Yahoo code "<symbol>.NS", which is
    # written after the instrument and its Dhan mapping.
    long_symbol = "L" * 62
    source = tmp_path / "long.csv"
    source.write_text(
        f"{DHAN_HEADER}\n"
        f"NSE,E,9001,EQUITY,0,{long_symbol},1.0,Long,,-0.01000,,5.0000,NA,ES,EQ,LONG NAME LTD\n"
        "NSE,E,1333,EQUITY,0,HDFCBANK,1.0,HDFC Bank,,-0.01000,,5.0000,NA,ES,EQ,HDFC BANK LTD\n"
    )

    out, err = _import(source)

    assert not Instrument.objects.filter(symbol=long_symbol).exists()
    assert not ProviderInstrumentMapping.objects.filter(search_code="9001").exists()
    assert err.startswith("line 2: search_code:")
    assert _mappings("NSE", "HDFCBANK") == {"DHAN": ("NSE_EQ", "1333"), "YF": ("", "HDFCBANK.NS")}
    assert "1 created, 0 updated, 0 unchanged, 0 skipped, 1 malformed" in out


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def fixture_server(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(FIXTURES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.IMPORT_URL_ALLOWED_HOSTS = [f"127.0.0.1:{server.server_address[1]}"]  # a local server is internal
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_dhan_import_from_url(reference, fixture_server):
    out, err = _import(f"{fixture_server}/dhan_scrip_master.csv")

    assert _instruments() == DEFAULT_SCOPE
    assert "9 created" in out
    assert err.splitlines() == MALFORMED


def test_import_from_missing_url_fails_cleanly(reference, fixture_server):
    with pytest.raises(CommandError, match=r"Could not download .*404"):
        _import(f"{fixture_server}/nope.csv")
    assert not Instrument.objects.exists()


def test_import_needs_reference_data():
    with pytest.raises(CommandError, match="seed_reference"):
        _import(SCRIP_MASTER)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("exchange,symbol,name\nNSE,X,Y\n", "Missing columns: SEM_EXM_EXCH_ID"),
    ],
)
def test_a_file_that_is_not_a_scrip_master_is_refused(reference, tmp_path, content, message):
    source = tmp_path / "bad.csv"
    source.write_text(content)

    with pytest.raises(CommandError, match=message):
        _import(source)


def test_missing_file_and_unknown_scheme_are_refused(reference, tmp_path):
    with pytest.raises(CommandError, match="Could not open"):
        _import(tmp_path / "absent.csv")
    with pytest.raises(CommandError, match="Unsupported URL scheme 'ftp'"):
        _import("ftp://example.com/master.csv")


def test_plain_csv_import(reference, tmp_path):
    source = tmp_path / "instruments.csv"
    source.write_text(
        "exchange,symbol,name,type,sector,isin\n"
        "NASDAQ,AAPL,Apple Inc.,EQ,Information Technology,US0378331005\n"
        "lse,VOD,Vodafone Group,eq,Telecommunications,GB00BH4HKS39\n"
        "HKEX,700,Tencent Holdings,EQ,,\n"
        "NYSE,SPY,SPDR S&P 500 ETF,ETF,,\n"
        "NASDAQ,MSFT,Microsoft,EQ,,US5949181046\n"
        "MOON,ABC,Moon Corp,EQ,,\n"
        "NYSE,,No Symbol,EQ,,\n"
        "NYSE,XYZ,Unknown Type,SWAP,,\n"
    )

    out, err = _import(source, "--format", "csv")

    assert _instruments() == {
        ("NASDAQ", "AAPL", "EQ"),
        ("LSE", "VOD", "EQ"),
        ("HKEX", "700", "EQ"),
        ("NYSE", "SPY", "ETF"),
    }
    assert err.splitlines() == [
        "line 6: bad ISIN 'US5949181046'",
        "line 7: unknown exchange 'MOON'",
        "line 8: missing symbol",
        "line 9: unknown instrument type 'SWAP'",
    ]
    assert "4 created, 0 updated, 0 unchanged, 0 skipped, 4 malformed" in out
    aapl = Instrument.objects.get(symbol="AAPL")
    assert (aapl.name, aapl.sector.name, aapl.isin) == ("Apple Inc.", "Information Technology", "US0378331005")
    assert Sector.objects.get(instruments__symbol="VOD").name == "Telecommunications"
    assert _mappings("NASDAQ", "AAPL") == {"YF": ("", "AAPL")}
    assert _mappings("LSE", "VOD") == {"YF": ("", "VOD.L")}
    assert _mappings("HKEX", "700") == {"YF": ("", "0700.HK")}

    out, _ = _import(source, "--format", "csv")
    assert "0 created, 0 updated, 4 unchanged" in out


def test_plain_csv_blank_cells_keep_stored_values(reference, tmp_path):
    source = tmp_path / "first.csv"
    source.write_text("exchange,symbol,name,type,sector,isin\nNASDAQ,AAPL,Apple Inc.,EQ,Information Technology,\n")
    _import(source, "--format", "csv")
    source.write_text("exchange,symbol,name,type,sector,isin\nNASDAQ,AAPL,,EQ,,US0378331005\n")

    out, _ = _import(source, "--format", "csv")

    aapl = Instrument.objects.get(symbol="AAPL")
    assert (aapl.name, aapl.sector.name, aapl.isin) == ("Apple Inc.", "Information Technology", "US0378331005")
    assert "0 created, 1 updated" in out


def test_service_imports_from_lines_and_flags_new_instruments_for_streaming(reference):
    lines = [
        DHAN_HEADER,
        "NSE,E,2885,EQUITY,0,RELIANCE,1.0,Reliance Industries,,-0.01000,,10.0000,NA,ES,EQ,RELIANCE INDUSTRIES LTD",
    ]

    result = instruments_import(lines=lines, file_format="dhan", record_data=True)

    assert (result.created, result.errors) == (1, [])
    assert Instrument.objects.get(symbol="RELIANCE").record_data is True


def test_isin_check_digit():
    assert isin_is_valid("INE002A01018")
    assert isin_is_valid("US0378331005")
    assert not isin_is_valid("INE002A01019")
    assert not isin_is_valid("ine002a01018")
    assert not isin_is_valid("INE002A0101")


def test_a_nul_byte_fails_only_its_own_row(reference, tmp_path):
    source = tmp_path / "instruments.csv"
    source.write_text(
        "exchange,symbol,name,type,sector,isin\n"
        "NASDAQ,AAPL,Apple Inc.,EQ,,\n"
        "NASDAQ,MS\x00FT,Microsoft,EQ,,\n"
        "NASDAQ,NVDA,NVIDIA,EQ,Information\x00Technology,\n"
        "NYSE,IBM,IBM,EQ,,\n"
    )

    out, err = _import(source, "--format", "csv")

    assert set(Instrument.objects.values_list("symbol", flat=True)) == {"AAPL", "IBM"}
    assert "2 created" in out and "2 malformed" in out
    assert err.splitlines() == ["line 3: contains a NUL character", "line 4: contains a NUL character"]
