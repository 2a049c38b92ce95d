"""Services that write the reference data and the demo instruments; running them twice changes nothing.

Providers, their mappings and the demo admin are written by ``ingestion.seeding`` and
``accounts.services``, which call these (``manage.py seed_reference`` and ``seed_demo``).

Each row is keyed by its unique field and only the values the reference data owns are reset
(names, hours, time zones, mappings' priorities, ...). Values an operator tunes are set when a
row is created and left alone afterwards: ``is_active`` flags, an instrument's ``record_data`` and ``blacklisted``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from django.db import models, transaction

from exchanges.models import Exchange

from . import reference_data
from .models import Instrument, InstrumentType, Sector

Outcome = Literal["created", "updated", "unchanged"]


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
    """Write instrument types, sectors and exchanges (the feed side adds providers and mappings)."""
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

    return report


@transaction.atomic
def demo_instruments_seed(report: SeedReport) -> dict[tuple[str, str], Instrument]:
    """About twenty well-known instruments (``reference_data.DEMO_INSTRUMENTS``), by (exchange, symbol).

    Reference prices for the simulator live in ``reference_data.DEMO_PRICES``; no price history
    is written. Expects ``reference_data_seed`` to have run.
    """
    exchanges = {
        e.code: e for e in Exchange.objects.filter(code__in={i["exchange"] for i in reference_data.DEMO_INSTRUMENTS})
    }
    types = {t.code: t for t in InstrumentType.objects.all()}
    sectors = {s.name: s for s in Sector.objects.all()}
    written = {}
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
        written[(exchange.code, spec["symbol"])] = instrument
    return written
