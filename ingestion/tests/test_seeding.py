"""Reference and demo seeding: idempotent, valid exchanges, the right providers and mappings."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import exchange_calendars
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from exchanges.models import Exchange
from ingestion.models import DEFAULT_SETTINGS, ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from ingestion.seeding import demo_data_seed, reference_data_seed
from instruments import reference_data
from instruments.importers import isin_is_valid
from instruments.models import Instrument, InstrumentType, Sector

pytestmark = pytest.mark.django_db

SEEDED_MODELS = [
    InstrumentType,
    Sector,
    Exchange,
    Provider,
    ExchangeProviderMapping,
    Instrument,
    ProviderInstrumentMapping,
    get_user_model(),
]


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in SEEDED_MODELS}


def _run(command: str, **options) -> str:
    out = io.StringIO()
    call_command(command, stdout=out, **options)
    return out.getvalue()


def test_seed_reference_twice_changes_nothing():
    first = _run("seed_reference")
    counts = _counts()
    stamps = {e.code: e.updated_at for e in Exchange.objects.all()}

    second = _run("seed_reference")
    report = reference_data_seed()

    assert _counts() == counts
    assert counts["Exchange"] >= 14
    assert counts["InstrumentType"] >= 9
    assert counts["Provider"] == 4
    assert f"exchanges: {counts['Exchange']} created, 0 updated, 0 unchanged" in first
    assert f"exchanges: 0 created, 0 updated, {counts['Exchange']} unchanged" in second
    assert all(c["created"] == c["updated"] == 0 for c in report.counts.values())
    assert sum(c["unchanged"] for c in report.counts.values()) == sum(
        counts[name] for name in ["InstrumentType", "Sector", "Exchange", "Provider", "ExchangeProviderMapping"]
    )
    assert {e.code: e.updated_at for e in Exchange.objects.all()} == stamps  # nothing was rewritten


def test_reseed_resets_reference_values_but_keeps_operator_settings():
    reference_data_seed()
    Exchange.objects.filter(code="NSE").update(timezone="UTC", market_close="15:00")
    yahoo = Provider.objects.get(code="YF")
    yahoo.settings = {**yahoo.settings, "resubscribe_s": 30}
    yahoo.credentials = {"token": "operator-secret"}
    yahoo.save()

    report = reference_data_seed()

    nse = Exchange.objects.get(code="NSE")
    assert nse.timezone == "Asia/Kolkata"
    assert nse.market_close.isoformat() == "15:30:00"
    assert report.counts["exchanges"]["updated"] == 1
    yahoo.refresh_from_db()
    assert yahoo.settings["resubscribe_s"] == 30
    assert yahoo.credentials == {"token": "operator-secret"}


@pytest.mark.parametrize("code", [row["code"] for row in reference_data.EXCHANGES])
def test_seeded_exchange_is_valid_and_matches_its_calendar(code):
    reference_data_seed()
    exchange = Exchange.objects.get(code=code)

    exchange.full_clean()

    zone = ZoneInfo(exchange.timezone)
    assert exchange.currency in {"INR", "USD", "GBP", "JPY", "HKD", "CNY", "EUR", "CAD", "AUD", "CHF", "KRW"}
    if exchange.is_open_24_hours:
        assert exchange.timezone == "UTC"
        return
    calendar = exchange_calendars.get_calendar(exchange.calendar_code)
    # The same wall clock as the calendar's zone, winter and summer (aliases like Asia/Calcutta allowed).
    for month in (1, 7):
        instant = datetime(2025, month, 15, 12, tzinfo=ZoneInfo("UTC"))
        assert instant.astimezone(zone).utcoffset() == instant.astimezone(ZoneInfo(str(calendar.tz))).utcoffset()
    assert exchange.market_open == calendar.open_times[-1][1]
    assert exchange.market_close == calendar.close_times[-1][1]
    assert exchange.pre_market_open is None or exchange.pre_market_open < exchange.market_open
    assert exchange.post_market_close is None or exchange.post_market_close > exchange.market_close


def test_reference_exchanges_facts():
    reference_data_seed()
    by_code = {e.code: e for e in Exchange.objects.all()}

    nse = by_code["NSE"]
    assert (nse.timezone, nse.currency, nse.calendar_code, nse.mic) == ("Asia/Kolkata", "INR", "XBOM", "XNSE")
    assert (nse.pre_market_open.isoformat(), nse.market_open.isoformat()) == ("09:00:00", "09:15:00")
    assert (by_code["NASDAQ"].mic, by_code["NASDAQ"].calendar_code) == ("XNAS", "XNYS")
    assert (by_code["SZSE"].mic, by_code["SZSE"].calendar_code) == ("XSHE", "XSHG")
    assert by_code["BSE"].calendar_code == "XBOM"
    crypto = by_code["CRYPTO"]
    assert crypto.is_open_24_hours and crypto.timezone == "UTC" and crypto.currency in {"USD", "USDT"}
    expected = {"NSE", "BSE", "NYSE", "NASDAQ", "LSE", "TSE", "HKEX", "SSE", "SZSE", "EPA", "TSX", "ASX", "XETRA"}
    assert expected <= by_code.keys()


def test_providers_have_default_settings_and_no_credentials(settings):
    settings.SIM_FOLLOW_SESSIONS = True  # the default outside the test suite
    reference_data_seed()

    providers = {p.code: p for p in Provider.objects.all()}

    assert {code: p.kind for code, p in providers.items()} == {
        "YF": "yahoo",
        "DHAN": "dhan",
        "SIM": "simulated",
        "REPLAY": "replay",
    }
    for provider in providers.values():
        assert provider.settings == DEFAULT_SETTINGS[provider.kind]
        assert not provider.credentials_set


def test_exchange_provider_mappings():
    reference_data_seed()

    def served_by(code):
        return [
            (m.provider.code, m.is_primary)
            for m in ExchangeProviderMapping.objects.filter(exchange__code=code).select_related("provider")
        ]

    assert served_by("NSE") == [("DHAN", True), ("YF", False), ("SIM", False)]
    assert served_by("BSE") == [("DHAN", True), ("YF", False), ("SIM", False)]
    for exchange in Exchange.objects.exclude(code__in=["NSE", "BSE"]):
        assert served_by(exchange.code) == [("YF", True), ("SIM", False)]
    sim = ExchangeProviderMapping.objects.filter(provider__code="SIM")
    assert sim.count() == Exchange.objects.count()
    highest_other = ExchangeProviderMapping.objects.exclude(provider__code="SIM").order_by("-priority").first()
    assert all(m.priority > highest_other.priority for m in sim)
    assert not ExchangeProviderMapping.objects.filter(provider__code="REPLAY").exists()


def test_reseed_moves_the_primary_role_back_without_a_constraint_error():
    reference_data_seed()
    ExchangeProviderMapping.objects.filter(exchange__code="NSE", provider__code="DHAN").update(is_primary=False)
    ExchangeProviderMapping.objects.filter(exchange__code="NSE", provider__code="YF").update(is_primary=True)

    reference_data_seed()

    primary = ExchangeProviderMapping.objects.get(exchange__code="NSE", is_primary=True)
    assert primary.provider.code == "DHAN"


def test_seed_demo_creates_instruments_mappings_and_admin(settings):
    settings.DEMO_ADMIN_PASSWORD = ""

    output = _run("seed_demo")

    assert 18 <= Instrument.objects.count() <= 25
    reliance = Instrument.objects.get(exchange__code="NSE", symbol="RELIANCE")
    assert reliance.sector.name == "Energy" and reliance.instrument_type.code == "EQ"
    codes = {m.provider.code: (m.segment, m.search_code) for m in reliance.provider_mappings.select_related("provider")}
    assert codes == {"YF": ("", "RELIANCE.NS"), "DHAN": ("NSE_EQ", "2885"), "SIM": ("NSE", "RELIANCE")}
    nifty = Instrument.objects.get(exchange__code="NSE", symbol="NIFTY")
    assert nifty.instrument_type.code == "INDEX"
    assert set(nifty.provider_mappings.values_list("segment", "search_code")) == {
        ("IDX_I", "13"),
        ("", "^NSEI"),
        ("NSE", "NIFTY"),
    }
    bse_reliance = Instrument.objects.get(exchange__code="BSE", symbol="RELIANCE")
    assert bse_reliance.provider_mappings.get(provider__code="DHAN").search_code == "500325"
    aapl = Instrument.objects.get(exchange__code="NASDAQ", symbol="AAPL")
    assert {m.provider.code for m in aapl.provider_mappings.select_related("provider")} == {"YF", "SIM"}
    assert aapl.provider_mappings.get(provider__code="YF").search_code == "AAPL"
    assert all(i.record_data for i in Instrument.objects.all())

    admin = get_user_model().objects.get(email="admin@example.com")
    assert admin.role == "admin" and admin.is_staff and admin.is_superuser
    password = output.split("with password: ")[1].split()[0]
    assert admin.check_password(password)
    assert "instruments: 21 created" in output


def test_seed_demo_twice_changes_nothing_and_prints_no_password(settings):
    settings.DEMO_ADMIN_PASSWORD = ""
    _run("seed_demo")
    counts = _counts()
    password_hash = get_user_model().objects.get().password

    output = _run("seed_demo")

    assert _counts() == counts
    assert "password" not in output.replace("DEMO_ADMIN_PASSWORD", "")
    assert "already exists" in output
    assert "instruments: 0 created, 0 updated, 21 unchanged" in output
    assert "instrument mappings: 0 created, 0 updated" in output
    assert get_user_model().objects.get().password == password_hash


def test_seed_demo_uses_configured_admin_email_and_password(settings, monkeypatch):
    settings.DEMO_ADMIN_PASSWORD = "a-long-demo-password-42"
    monkeypatch.setenv("DEMO_ADMIN_EMAIL", "ops@example.org")

    output = _run("seed_demo")

    admin = get_user_model().objects.get(email="ops@example.org")
    assert admin.check_password("a-long-demo-password-42")
    assert "a-long-demo-password-42" not in output


def test_seed_demo_rejects_a_bad_admin_email_and_writes_nothing(settings):
    settings.DEMO_ADMIN_PASSWORD = ""

    with pytest.raises(CommandError, match="Invalid admin email"):
        _run("seed_demo", admin_email="not-an-email")

    assert _counts() == dict.fromkeys(_counts(), 0)


def test_demo_reference_data_is_consistent():
    result = demo_data_seed(admin_email="admin@example.com", admin_password="pw-demo-12345")

    assert result.admin.generated_password is None
    for spec in reference_data.DEMO_INSTRUMENTS:
        price = reference_data.DEMO_PRICES[(spec["exchange"], spec["symbol"])]
        instrument = Instrument.objects.get(exchange__code=spec["exchange"], symbol=spec["symbol"])
        assert price > 0
        assert price % instrument.tick_size == 0
        assert not spec["isin"] or isin_is_valid(spec["isin"])
    assert len(reference_data.DEMO_PRICES) == len(reference_data.DEMO_INSTRUMENTS)
    assert Instrument.objects.get(exchange__code="NSE", symbol="TCS").tick_size == Decimal("0.05")
