"""Services that write the reference data and the demo set; running them twice changes nothing.

Each row is keyed by its unique field and only the values the reference data owns are reset
(names, hours, time zones, mappings' priorities, ...). Values an operator tunes are set when a
row is created and left alone afterwards: a provider's settings, rate limit and credentials,
``is_active`` flags, an instrument's ``record_data`` and ``blacklisted``.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from django.contrib.auth import get_user_model
from django.core.validators import validate_email
from django.db import models, transaction

from exchanges.models import Exchange
from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping

from . import reference_data
from .models import Instrument, InstrumentType, Sector

Outcome = Literal["created", "updated", "unchanged"]

_YAHOO_SUFFIXES: dict[str, str] = {row["code"]: row["yahoo_suffix"] for row in reference_data.EXCHANGES}


def record_upsert[M: models.Model](
    *, model: type[M], lookup: dict, values: dict, create_values: dict | None = None
) -> tuple[M, Outcome]:
    """Create or update the one row matching ``lookup``; write only when a value differs.

    Like ``update_or_create`` keyed by a unique field, but it validates the row
    (``full_clean``), leaves an unchanged row untouched (no UPDATE, ``updated_at`` kept) and says
    which of the three happened. ``create_values`` are applied only when the row is new.
    Lookups with ``__`` (``code__iexact``) are not copied onto a new row: put the field in
    ``values`` too.
    """
    obj = model.objects.filter(**lookup).first()
    # Related objects were just read from the database; re-checking each one costs a query.
    relation_fields = [name for name, value in values.items() if isinstance(value, models.Model)]
    if obj is None:
        plain_lookup = {k: v for k, v in lookup.items() if "__" not in k}
        obj = model(**plain_lookup, **values, **(create_values or {}))
        obj.full_clean(exclude=relation_fields, validate_unique=False, validate_constraints=False)
        obj.save()
        return obj, "created"
    changed = changed_fields(obj=obj, values=values)
    if not changed:
        return obj, "unchanged"
    for name in changed:
        setattr(obj, name, values[name])
    obj.full_clean(exclude=relation_fields, validate_unique=False, validate_constraints=False)
    obj.save(update_fields=[*changed, "updated_at"] if hasattr(obj, "updated_at") else changed)
    return obj, "updated"


def changed_fields(*, obj: models.Model, values: dict) -> list[str]:
    """The names in ``values`` whose value differs from ``obj``'s; relations compare by primary key."""
    return [
        name
        for name, value in values.items()
        # attname (exchange_id) avoids a query to load the related row.
        if getattr(obj, obj._meta.get_field(name).attname) != (value.pk if isinstance(value, models.Model) else value)
    ]


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


@dataclass
class SeedReport:
    """What a seeding run did, per model: how many rows were created, updated or left unchanged."""

    counts: dict[str, Counter] = field(default_factory=dict)

    def add(self, label: str, outcome: Outcome) -> None:
        self.counts.setdefault(label, Counter())[outcome] += 1

    def lines(self) -> list[str]:
        return [
            f"{label}: {c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged"
            for label, c in self.counts.items()
        ]


@transaction.atomic
def reference_data_seed() -> SeedReport:
    """Write instrument types, sectors, exchanges, providers and exchange-provider mappings.

    Providers are created with their kind's default settings and no credentials; afterwards
    their settings, rate limit and credentials belong to the operator and are never reset.
    """
    report = SeedReport()
    for row in reference_data.INSTRUMENT_TYPES:
        _, outcome = record_upsert(model=InstrumentType, lookup={"code": row["code"]}, values={"name": row["name"]})
        report.add("instrument types", outcome)
    for name in reference_data.SECTORS:
        _, outcome = record_upsert(model=Sector, lookup={"name__iexact": name}, values={"name": name})
        report.add("sectors", outcome)

    exchanges = {}
    for row in reference_data.EXCHANGES:
        values = {k: v for k, v in row.items() if k != "yahoo_suffix"}
        values.setdefault("is_open_24_hours", False)
        exchanges[row["code"]], outcome = record_upsert(
            model=Exchange, lookup={"code__iexact": row["code"]}, values=values
        )
        report.add("exchanges", outcome)

    providers = {}
    for row in reference_data.PROVIDERS:
        providers[row["code"]], outcome = record_upsert(
            model=Provider,
            lookup={"code": row["code"]},
            values={"name": row["name"], "kind": row["kind"]},
            create_values={"settings": dict(row["settings"]), "rate_limit": row["rate_limit"], "credentials": {}},
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
    return report


@dataclass
class DemoAdmin:
    """The demo admin account; ``generated_password`` is set only when this run made one up."""

    user: models.Model
    created: bool
    generated_password: str | None = None


@dataclass
class DemoSeedResult:
    """The reference data report (plus demo instruments and mappings) and the admin account."""

    report: SeedReport
    admin: DemoAdmin


@transaction.atomic
def demo_admin_ensure(*, email: str, password: str = "") -> DemoAdmin:
    """Create the admin user (role admin, staff, superuser) unless an account with that email exists.

    An existing account is left exactly as it is. Without a ``password`` a random one is
    generated and returned once, so the caller can show it.
    """
    validate_email(email)
    user_model = get_user_model()
    user = user_model.objects.filter(email__iexact=email).first()
    if user is not None:
        return DemoAdmin(user=user, created=False)
    generated = None if password else secrets.token_urlsafe(16)
    user = user_model.objects.create_superuser(email=email, password=password or generated)
    return DemoAdmin(user=user, created=True, generated_password=generated)


@transaction.atomic
def demo_data_seed(
    *, admin_email: str = reference_data.DEFAULT_ADMIN_EMAIL, admin_password: str = ""
) -> DemoSeedResult:
    """Reference data, about twenty well-known instruments with their mappings, and an admin user.

    Every demo instrument gets a Yahoo mapping, a Dhan mapping on NSE and BSE, and a simulator
    mapping (segment = exchange code, code = symbol) so the simulator can stream it. Reference
    prices for the simulator live in ``reference_data.DEMO_PRICES``; no price history is written.
    """
    report = reference_data_seed()
    exchanges = {
        e.code: e for e in Exchange.objects.filter(code__in={i["exchange"] for i in reference_data.DEMO_INSTRUMENTS})
    }
    types = {t.code: t for t in InstrumentType.objects.all()}
    sectors = {s.name: s for s in Sector.objects.all()}
    providers = {p.code: p for p in Provider.objects.filter(code__in=["YF", "DHAN", "SIM"])}

    for spec in reference_data.DEMO_INSTRUMENTS:
        exchange = exchanges[spec["exchange"]]
        tick_size = Decimal("0.01") if spec["type"] == "INDEX" else reference_data.DEMO_TICK_SIZES[spec["exchange"]]
        instrument, outcome = record_upsert(
            model=Instrument,
            lookup={"exchange": exchange, "symbol": spec["symbol"]},
            values={
                "name": spec["name"],
                "instrument_type": types[spec["type"]],
                "sector": sectors[spec["sector"]] if spec["sector"] else None,
                "isin": spec["isin"],
                "lot_size": 1,
                "tick_size": tick_size,
            },
        )
        report.add("instruments", outcome)

        codes = [(providers["SIM"], exchange.code, spec["symbol"])]
        yahoo = yahoo_symbol_for(exchange_code=exchange.code, symbol=spec["symbol"], type_code=spec["type"])
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
