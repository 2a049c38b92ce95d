"""Why the ingestion streams nothing (or less than expected): one actionable line per cause.

``manage.py ingest`` prints these at start. The causes follow ``stream_plan``: an instrument is
streamed when it is active, ``record_data``, neither blacklisted nor delisted, on an active
exchange, and a provider is its candidate when the provider is active, maps the exchange, and
(except the simulator and the replayer) maps the instrument with a search code.
"""

from __future__ import annotations

from collections import defaultdict

from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from ingestion.provider_urls import provider_url_problems
from ingestion.streaming import MAPPING_OPTIONAL
from instruments.models import Instrument

CREDENTIAL_KEYS = {Provider.Kind.DHAN: ("client_id", "access_token")}
LISTED = 5


def _names(labels: list[str]) -> str:
    shown = ", ".join(sorted(labels)[:LISTED])
    return shown + (f" and {len(labels) - LISTED} more" if len(labels) > LISTED else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def stream_diagnosis(*, provider_codes: list[str] | None = None) -> list[str]:
    """What keeps providers or recorded instruments from streaming; empty when nothing does."""
    providers = Provider.objects.all().order_by("code")
    if provider_codes:
        providers = providers.filter(code__in=provider_codes)
    providers = list(providers)
    recorded = list(
        Instrument.objects.filter(
            is_active=True, record_data=True, blacklisted=False, delisted=False, exchange__is_active=True
        ).values_list("id", "symbol", "exchange_id", "exchange__code")
    )
    lines: list[str] = []
    active = [p for p in providers if p.is_active]
    for provider in providers:
        if not provider.is_active:
            lines.append(f"{provider.code} is not active: activate it in the admin (Providers) to stream it.")
    if not active:
        named = "the providers named" if provider_codes else "any provider"
        lines.append(f"No active provider among {named}: add or activate one in the admin (Providers).")
    if not recorded:
        lines.append(
            "No instrument is marked record_data (active, not blacklisted or delisted, on an active exchange): "
            "switch it on in the admin, with PATCH /instruments/{id}, or import with --record-data."
        )
        return lines

    routes: dict[str, set[int]] = defaultdict(set)  # provider code -> exchanges it maps
    for code, exchange_id in ExchangeProviderMapping.objects.filter(is_active=True, provider__in=active).values_list(
        "provider__code", "exchange_id"
    ):
        routes[code].add(exchange_id)
    mapped: dict[str, set[int]] = defaultdict(set)  # provider code -> instruments it maps
    for code, iid in ProviderInstrumentMapping.objects.filter(
        is_active=True, provider__in=active, instrument_id__in=[row[0] for row in recorded]
    ).values_list("provider__code", "instrument_id"):
        mapped[code].add(iid)

    routed: set[int] = set()
    for provider in active:
        if problems := provider_url_problems(provider.kind, provider.effective_settings()):
            lines.append(f"{provider.code} cannot start: {' '.join(problems)}")
        keys = CREDENTIAL_KEYS.get(provider.kind, ())
        if missing := [k for k in keys if not str(provider.credentials.get(k) or "").strip()]:
            lines.append(
                f"{provider.code} has no credentials ({', '.join(missing)} missing): enter them in the admin "
                "(Providers, Credentials) or PUT /providers/{id}."
            )
        on_exchange = [row for row in recorded if row[2] in routes[provider.code]]
        unrouted = [row for row in recorded if row[2] not in routes[provider.code]]
        if unrouted:
            exchanges = sorted({row[3] for row in unrouted})
            lines.append(
                f"{provider.code} has no exchange mapping for the {_plural(len(unrouted), 'instrument')} marked "
                f"record_data on {_names(exchanges)}: add one in the admin (Exchanges, provider mappings) or "
                "POST /exchange/{id}/providers."
            )
        if provider.kind in MAPPING_OPTIONAL:
            routed.update(row[0] for row in on_exchange)
            continue
        unmapped = [row for row in on_exchange if row[0] not in mapped[provider.code]]
        routed.update(row[0] for row in on_exchange if row[0] in mapped[provider.code])
        if unmapped:
            lines.append(
                f"{provider.code} has no instrument mapping (search code) for {_plural(len(unmapped), 'instrument')} "
                f"marked record_data ({_names([f'{row[3]}:{row[1]}' for row in unmapped])}): add them in the admin "
                "(Providers, instrument mappings), POST /providers/{id}/instruments, or import a scrip master "
                "(import_instruments --format dhan)."
            )
    orphans = [f"{row[3]}:{row[1]}" for row in recorded if row[0] not in routed]
    if orphans and active:
        lines.append(
            f"{_plural(len(orphans), 'instrument')} marked record_data have no route to any active provider "
            f"({_names(orphans)}): see the lines above."
        )
    return lines
