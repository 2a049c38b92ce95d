"""The feed side of seeding: providers, their exchange and instrument mappings, and the full runs.

``instruments.seeding`` writes the reference data itself (types, sectors, exchanges, demo
instruments); this module adds what only the feed needs and runs both, for
``manage.py seed_reference`` and ``seed_demo``. It also fills in the instrument importer's
extension point (``ProviderMappingExtension``) so an imported scrip master gets its Dhan and
Yahoo mappings in the same savepoint as each instrument. Running anything twice changes nothing;
a provider's settings, rate limit and credentials are set when it is created and then belong to
the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.services import DemoAdmin, demo_admin_ensure
from exchanges.models import Exchange
from instruments import reference_data as instruments_reference
from instruments import seeding as instruments_seeding
from instruments.models import Instrument
from instruments.seeding import Outcome, SeedReport, record_upsert

from . import reference_data
from .models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping

_YAHOO_SUFFIXES: dict[str, str] = {row["code"]: row["yahoo_suffix"] for row in instruments_reference.EXCHANGES}


def yahoo_symbol_for(*, exchange_code: str, symbol: str, type_code: str) -> str | None:
    """Yahoo Finance's symbol for an instrument, or None when it cannot be derived.

    Equities and ETFs take the exchange's suffix (``RELIANCE.NS``, ``0700.HK``); indices are
    mapped only where known (``NIFTY`` -> ``^NSEI``); futures and options get none.
    """
    if type_code == "INDEX":
        return reference_data.YAHOO_INDEX_SYMBOLS.get((exchange_code, symbol))
    if type_code in {"FUT", "OPT"} or exchange_code not in _YAHOO_SUFFIXES:
        return None
    if exchange_code == "HKEX" and symbol.isdigit():
        # Yahoo writes Hong Kong codes with four digits: 700 -> 0700.HK.
        symbol = symbol.zfill(4)
    return f"{symbol}{_YAHOO_SUFFIXES[exchange_code]}"


def instrument_mapping_upsert(
    *, provider: Provider, instrument: Instrument, search_code: str, segment: str = ""
) -> Outcome:
    """Point ``provider``'s code (``segment`` + ``search_code``) at ``instrument``.

    Keyed by the provider's code rather than by the instrument: when an exchange renames a
    symbol, the security id (Dhan) moves to the renamed instrument instead of the import
    failing on the unique code. The instrument's older mapping for the same provider, if any,
    is removed, since a provider names an instrument one way only.
    """
    stale, _ = (
        ProviderInstrumentMapping.objects.filter(provider=provider, instrument=instrument)
        .exclude(segment=segment, search_code=search_code)
        .delete()
    )
    _, outcome = record_upsert(
        model=ProviderInstrumentMapping,
        lookup={"provider": provider, "segment": segment, "search_code": search_code},
        values={"instrument": instrument},
    )
    return "updated" if stale and outcome == "unchanged" else outcome


def _initial_settings(row: dict) -> dict:
    initial = dict(row["settings"])
    if row["kind"] == "simulated":
        initial["follow_sessions"] = bool(getattr(settings, "SIM_FOLLOW_SESSIONS", True))
    return initial


def feed_reference_seed(report: SeedReport) -> None:
    """Providers (default settings, no credentials) and which provider serves which exchange."""
    exchanges = {e.code: e for e in Exchange.objects.all()}
    providers = {}
    for row in reference_data.PROVIDERS:
        providers[row["code"]], outcome = record_upsert(
            model=Provider,
            lookup={"code": row["code"]},
            values={"name": row["name"], "kind": row["kind"]},
            create_values={"settings": _initial_settings(row), "rate_limit": row["rate_limit"], "credentials": {}},
        )
        report.add("providers", outcome)

    # Non-primary rows first, so that moving the primary role never meets two primaries at once.
    for row in sorted(reference_data.EXCHANGE_PROVIDER_MAPPINGS, key=lambda r: r["is_primary"]):
        exchange, provider = exchanges[row["exchange"]], providers[row["provider"]]
        if row["is_primary"]:
            ExchangeProviderMapping.objects.filter(exchange=exchange, is_primary=True).exclude(
                provider=provider
            ).update(is_primary=False)
        _, outcome = record_upsert(
            model=ExchangeProviderMapping,
            lookup={"exchange": exchange, "provider": provider},
            values={"is_primary": row["is_primary"], "priority": row["priority"]},
        )
        report.add("exchange-provider mappings", outcome)


@transaction.atomic
def reference_data_seed() -> SeedReport:
    """Instrument types, sectors, exchanges, providers and exchange-provider mappings."""
    report = instruments_seeding.reference_data_seed()
    feed_reference_seed(report)
    return report


@dataclass
class DemoSeedResult:
    """The reference data report (plus demo instruments and mappings) and the admin account."""

    report: SeedReport
    admin: DemoAdmin


@transaction.atomic
def demo_data_seed(
    *, admin_email: str = instruments_reference.DEFAULT_ADMIN_EMAIL, admin_password: str = ""
) -> DemoSeedResult:
    """Reference data, about twenty well-known instruments with their mappings, and an admin user.

    Every demo instrument gets a Yahoo mapping, a Dhan mapping on NSE and BSE, and a simulator
    mapping (segment = exchange code, code = symbol) so the simulator can stream it.
    """
    report = reference_data_seed()
    instruments = instruments_seeding.demo_instruments_seed(report)
    providers = {p.code: p for p in Provider.objects.filter(code__in=["YF", "DHAN", "SIM"])}
    for spec in instruments_reference.DEMO_INSTRUMENTS:
        instrument = instruments[(spec["exchange"], spec["symbol"])]
        exchange_code = spec["exchange"]
        codes = [(providers["SIM"], exchange_code, spec["symbol"])]
        yahoo = yahoo_symbol_for(exchange_code=exchange_code, symbol=spec["symbol"], type_code=spec["type"])
        if yahoo:
            codes.append((providers["YF"], "", yahoo))
        if spec["dhan"]:
            segment, security_id = spec["dhan"]
            codes.append((providers["DHAN"], segment, security_id))
        for provider, segment, search_code in codes:
            outcome = instrument_mapping_upsert(
                provider=provider, instrument=instrument, search_code=search_code, segment=segment
            )
            report.add("instrument mappings", outcome)

    admin = demo_admin_ensure(email=admin_email, password=admin_password)
    return DemoSeedResult(report=report, admin=admin)


class ProviderMappingExtension:
    """The instrument importer's Dhan and Yahoo mappings (``instruments.importers.extensions``).

    Planned per row as ``[(provider, segment, search code), ...]``; stored ones are loaded once
    per batch as ``{instrument id: {provider id: (segment, search code)}}``.
    """

    def __init__(self) -> None:
        self.providers: dict[str, Provider] = {}

    def missing_reference(self, *, dhan: bool) -> set[str]:
        self.providers = {p.code: p for p in Provider.objects.filter(code__in=["DHAN", "YF"])}
        return ({"YF", "DHAN"} if dhan else {"YF"}) - self.providers.keys()

    def plan(self, *, record, exchange, instrument_type) -> list[tuple[Provider, str, str]]:
        mappings = []
        if record.dhan is not None:
            segment, security_id = record.dhan
            mappings.append((self.providers["DHAN"], segment, security_id))
        yahoo = yahoo_symbol_for(exchange_code=exchange.code, symbol=record.symbol, type_code=instrument_type.code)
        if yahoo:
            mappings.append((self.providers["YF"], "", yahoo))
        return mappings

    def load(self, instruments: list[Instrument]) -> dict[int, dict[int, tuple[str, str]]]:
        stored: dict[int, dict[int, tuple[str, str]]] = {}
        if not instruments:
            return stored
        rows = ProviderInstrumentMapping.objects.filter(
            instrument__in=instruments, provider__in=self.providers.values()
        ).values_list("instrument_id", "provider_id", "segment", "search_code")
        for instrument_id, provider_id, segment, search_code in rows:
            stored.setdefault(instrument_id, {})[provider_id] = (segment, search_code)
        return stored

    def is_stored(self, *, instrument: Instrument, planned: list, stored: dict) -> bool:
        mappings = stored.get(instrument.pk, {})
        return all(mappings.get(provider.pk) == (segment, code) for provider, segment, code in planned)

    def write(self, *, instrument: Instrument, planned: list) -> bool:
        changed = False
        for provider, segment, search_code in planned:
            outcome = instrument_mapping_upsert(
                provider=provider, instrument=instrument, search_code=search_code, segment=segment
            )
            changed = changed or outcome != "unchanged"
        return changed
