"""Which instruments to stream, and through which providers (a read of the database).

An instrument is streamed when it is active, ``record_data``, neither blacklisted nor
delisted, on an active exchange. Its candidate providers are its exchange's active provider
mappings, primary first then by priority, keeping those that know the instrument (a
``ProviderInstrumentMapping``); the simulator and the replayer need no mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Max

from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from ingestion.providers.base import Subscription
from instruments.models import Instrument
from marketdata.models import PriceHistoryDaily

MAPPING_OPTIONAL = {Provider.Kind.SIMULATED, Provider.Kind.REPLAY}


@dataclass(frozen=True)
class ProviderSpec:
    """What it takes to build a feed client for one provider row."""

    id: int
    code: str
    kind: str
    settings: dict
    credentials: dict


@dataclass
class StreamPlan:
    """Candidates per instrument, the provider rows, and labels for the engine."""

    providers: dict[str, ProviderSpec]
    candidates: dict[int, list[tuple[str, Subscription]]]  # instrument id -> [(provider code, sub)]
    timezones: dict[int, str]


def _reference_prices(instrument_ids: list[int]) -> dict[int, float]:
    """The last daily close of each instrument, else the demo reference price."""
    from instruments.reference_data import DEMO_PRICES

    latest = (
        PriceHistoryDaily.objects.filter(instrument_id__in=instrument_ids)
        .values("instrument_id")
        .annotate(last=Max("date"))
    )
    last_dates = {row["instrument_id"]: row["last"] for row in latest}
    rows = PriceHistoryDaily.objects.filter(instrument_id__in=last_dates).values("instrument_id", "date", "close")
    closes = {row["instrument_id"]: row["close"] for row in rows if last_dates.get(row["instrument_id"]) == row["date"]}
    demo = Instrument.objects.filter(id__in=instrument_ids).values_list("id", "exchange__code", "symbol")
    for iid, exchange, symbol in demo:
        if iid not in closes and (exchange, symbol) in DEMO_PRICES:
            closes[iid] = float(DEMO_PRICES[(exchange, symbol)])
    return closes


def stream_plan(*, provider_codes: list[str] | None = None) -> StreamPlan:
    """Build the plan, optionally limited to some providers (one process per provider group)."""
    providers = Provider.objects.filter(is_active=True)
    if provider_codes:
        providers = providers.filter(code__in=provider_codes)
    specs = {p.code: ProviderSpec(p.id, p.code, p.kind, p.effective_settings(), p.credentials) for p in providers}
    instruments = list(
        Instrument.objects.filter(
            is_active=True, record_data=True, blacklisted=False, delisted=False, exchange__is_active=True
        ).values("id", "symbol", "exchange_id", "exchange__code", "exchange__timezone", "tick_size")
    )
    ids = [row["id"] for row in instruments]
    routes: dict[int, list[tuple[bool, int, str]]] = {}
    for m in ExchangeProviderMapping.objects.filter(is_active=True, provider__code__in=specs).values(
        "exchange_id", "is_primary", "priority", "provider__code"
    ):
        routes.setdefault(m["exchange_id"], []).append((not m["is_primary"], m["priority"], m["provider__code"]))
    mappings: dict[tuple[int, str], tuple[str, str]] = {
        (row["instrument_id"], row["provider__code"]): (row["search_code"], row["segment"])
        for row in ProviderInstrumentMapping.objects.filter(
            is_active=True, instrument_id__in=ids, provider__code__in=specs
        ).values("instrument_id", "provider__code", "search_code", "segment")
    }
    prices = _reference_prices(ids) if any(s.kind == Provider.Kind.SIMULATED for s in specs.values()) else {}

    candidates: dict[int, list[tuple[str, Subscription]]] = {}
    for row in instruments:
        iid = row["id"]
        for _not_primary, _priority, code in sorted(routes.get(row["exchange_id"], [])):
            mapping = mappings.get((iid, code))
            if mapping is None and specs[code].kind not in MAPPING_OPTIONAL:
                continue
            search_code, segment = mapping or (row["symbol"], "")
            sub = Subscription(
                instrument_id=iid,
                symbol=row["symbol"],
                exchange=row["exchange__code"],
                search_code=search_code,
                segment=segment,
                reference_price=prices.get(iid),
                tick_size=float(row["tick_size"] or 0.01),
            )
            candidates.setdefault(iid, []).append((code, sub))
    timezones = {row["id"]: row["exchange__timezone"] for row in instruments}
    return StreamPlan(providers=specs, candidates=candidates, timezones=timezones)
