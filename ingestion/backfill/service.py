"""History backfill: validate the whole request, then fetch each instrument's bars and upsert them.

Everything a caller can get wrong (provider, interval, dates, symbols, credentials) is checked
in ``backfill_plan`` before the first request and the first write, and reported together in
one ``BackfillError``. A provider failing for one instrument while the run goes on is reported
in the result's ``errors`` and does not stop the others.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings

from ingestion.models import Provider, ProviderInstrumentMapping
from ingestion.provider_urls import provider_url_problems
from instruments.models import Instrument
from marketdata.selectors import AmbiguousSymbolError, InstrumentNotFoundError, instrument_for_symbol

from . import dhan, yahoo
from .base import BackfillError, HistoryFetchError
from .ratelimit import rate_limiter_for
from .store import daily_history_upsert, intraday_history_upsert

logger = logging.getLogger(__name__)

INTERVALS = ("1m", "1d")
SUPPORTED_KINDS = (Provider.Kind.YAHOO, Provider.Kind.DHAN)
# Without --start: the last week of minutes, the last year of days.
DEFAULT_LOOKBACK_DAYS = {"1m": 7, "1d": 365}

Progress = Callable[[int, int], None]
HistoryClient = yahoo.YahooHistoryClient | dhan.DhanHistoryClient


@dataclass(frozen=True)
class Target:
    """One instrument to fetch, with the provider's name for it."""

    instrument: Instrument
    mapping: ProviderInstrumentMapping

    @property
    def label(self) -> str:
        return f"{self.instrument.exchange.code}:{self.instrument.symbol}"


@dataclass
class BackfillPlan:
    """A validated backfill: nothing in it can fail for a reason the caller could have avoided."""

    provider: Provider
    interval: str
    start: date
    end: date
    targets: list[Target]
    warnings: list[str] = field(default_factory=list)


def parse_date(value: date | str | None, name: str) -> date | None:
    """A date from a ``date`` or a ``YYYY-MM-DD`` string; ``BackfillError`` for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        raise BackfillError(f"{name}: give a date (YYYY-MM-DD), not a date and time.", errors={name: ["not a date"]})
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    message = f"'{value}' is not a valid date (YYYY-MM-DD)."
    raise BackfillError(f"{name}: {message}", errors={name: [message]})


def parse_symbols(symbols: Iterable[str] | str | None) -> list[str]:
    """Symbols from a list and/or comma- or space-separated strings, duplicates dropped, order kept."""
    if symbols is None:
        return []
    if isinstance(symbols, str):
        symbols = [symbols]
    out: list[str] = []
    for item in symbols:
        if not isinstance(item, str):
            raise BackfillError("symbols: every symbol must be a string.", errors={"symbols": ["not a string"]})
        for symbol in re.split(r"[,\s]+", item.strip()):
            if symbol and symbol not in out:
                out.append(symbol)
    return out


def _today() -> date:
    return datetime.now(UTC).date()


def _provider(code: str, errors: dict[str, list[str]]) -> Provider | None:
    if not isinstance(code, str) or not code.strip():
        errors.setdefault("provider", []).append("A provider code is required (YF or DHAN).")
        return None
    provider = Provider.objects.filter(code__iexact=code.strip()).first()
    if provider is None:
        errors.setdefault("provider", []).append(f"Unknown provider '{code}'.")
        return None
    if provider.kind not in SUPPORTED_KINDS:
        errors.setdefault("provider", []).append(
            f"Provider {provider.code} ({provider.get_kind_display()}) has no history API; "
            "use a Yahoo or Dhan provider."
        )
        return None
    if not provider.is_active:
        errors.setdefault("provider", []).append(f"Provider {provider.code} is not active.")
    if provider.rate_limit is None or provider.rate_limit <= 0:
        errors.setdefault("provider", []).append(f"Provider {provider.code} has no positive rate limit.")
    rest_url = provider.effective_settings().get("rest_url") or ""
    if rest_url and urlsplit(str(rest_url)).scheme not in {"http", "https"}:
        errors.setdefault("provider", []).append(f"Provider {provider.code} has a bad rest_url {rest_url!r}.")
    for problem in provider_url_problems(provider.kind, provider.settings):
        # Stored around the services' checks: nothing, credentials least of all, goes there.
        errors.setdefault("provider", []).append(f"Provider {provider.code}: {problem}")
    if provider.kind == Provider.Kind.DHAN:
        missing = [k for k in ("access_token", "client_id") if not str(provider.credentials.get(k) or "").strip()]
        if missing:
            errors.setdefault("provider", []).append(
                f"Provider {provider.code} lacks credentials: {', '.join(missing)}."
            )
    return provider


def _mapping_problem(provider: Provider, instrument: Instrument, mapping: ProviderInstrumentMapping | None) -> str:
    """Why ``provider`` cannot fetch ``instrument``'s history, or '' when it can."""
    label = f"{instrument.exchange.code}:{instrument.symbol}"
    if mapping is None:
        return f"{label} has no active {provider.code} mapping."
    if provider.kind == Provider.Kind.DHAN:
        if instrument.instrument_type.code not in dhan.DHAN_INSTRUMENTS:
            return f"{label}: Dhan history is not supported for type {instrument.instrument_type.code}."
        if not mapping.segment:
            return f"{label}: its Dhan mapping has no exchange segment."
    return ""


def _mappings(provider: Provider, instrument_ids: Iterable[int] | None = None):
    qs = ProviderInstrumentMapping.objects.filter(provider=provider, is_active=True).select_related(
        "instrument__exchange", "instrument__instrument_type"
    )
    if instrument_ids is not None:
        qs = qs.filter(instrument_id__in=list(instrument_ids))
    return qs


def _targets(provider: Provider, symbols: list[str], errors: dict[str, list[str]], warnings: list[str]):
    if symbols:
        instruments: list[Instrument] = []
        for symbol in symbols:
            try:
                instruments.append(instrument_for_symbol(symbol=symbol))
            except (InstrumentNotFoundError, AmbiguousSymbolError) as exc:
                errors.setdefault("symbols", []).append(str(exc))
        by_instrument = {m.instrument_id: m for m in _mappings(provider, (i.pk for i in instruments))}
        targets = []
        for instrument in instruments:
            mapping = by_instrument.get(instrument.pk)
            if problem := _mapping_problem(provider, instrument, mapping):
                errors.setdefault("symbols", []).append(problem)
            elif mapping is not None:
                targets.append(Target(instrument=mapping.instrument, mapping=mapping))
        return targets
    # No symbols: every instrument the operator streams through this provider.
    mappings = _mappings(provider).filter(
        instrument__is_active=True,
        instrument__record_data=True,
        instrument__blacklisted=False,
        instrument__delisted=False,
    )
    targets, skipped = [], 0
    for mapping in mappings.order_by("instrument__exchange__code", "instrument__symbol"):
        if _mapping_problem(provider, mapping.instrument, mapping):
            skipped += 1
        else:
            targets.append(Target(instrument=mapping.instrument, mapping=mapping))
    if skipped:
        warnings.append(f"{skipped} mapped instruments skipped: {provider.code} cannot fetch their history.")
    if not targets:
        warnings.append(f"No instruments to backfill: none is streamed (record_data) through {provider.code}.")
    return targets


def backfill_plan(
    *,
    provider_code: str,
    interval: str,
    start: date | str | None = None,
    end: date | str | None = None,
    symbols: Iterable[str] | str | None = None,
    today: date | None = None,
) -> BackfillPlan:
    """Check a backfill request and resolve its instruments; ``BackfillError`` lists every problem.

    Dates are exchange-local trading dates, both inclusive; ``end`` defaults to today, ``start``
    to a week (1m) or a year (1d) before ``end``. Yahoo's 1-minute range is clamped to the days
    Yahoo still serves, with a warning.
    """
    today = today or _today()
    errors: dict[str, list[str]] = {}
    warnings: list[str] = []
    if interval not in INTERVALS:
        errors.setdefault("interval", []).append(f"Unknown interval '{interval}': use one of {', '.join(INTERVALS)}.")
    dates: dict[str, date | None] = {}
    for name, value in (("start", start), ("end", end)):
        try:
            dates[name] = parse_date(value, name)
        except BackfillError as exc:
            for key, messages in exc.errors.items():
                errors.setdefault(key, []).extend(messages)
            dates[name] = None
    try:
        symbol_list = parse_symbols(symbols)
    except BackfillError as exc:
        errors.setdefault("symbols", []).extend(exc.errors["symbols"])
        symbol_list = []
    provider = _provider(provider_code, errors)

    start_d, end_d = dates["start"], dates["end"]
    # Asian exchanges are a day ahead of UTC for part of the day; later than that is the future.
    horizon = today + timedelta(days=1)
    if "start" not in errors and "end" not in errors and interval in INTERVALS:
        if end_d is None:
            end_d = horizon if start_d is not None and start_d > today else today
        if end_d > horizon:
            warnings.append(f"end {end_d} is in the future; using {horizon}.")
            end_d = horizon
        if start_d is None:
            start_d = end_d - timedelta(days=DEFAULT_LOOKBACK_DAYS[interval])
        if start_d > horizon:
            errors.setdefault("start", []).append(f"start {start_d} is in the future.")
        elif start_d > end_d:
            errors.setdefault("start", []).append(f"start {start_d} is after end {end_d}.")
        elif (end_d - start_d).days + 1 > settings.HISTORY_MAX_RANGE_DAYS:
            errors.setdefault("start", []).append(
                f"The range covers {(end_d - start_d).days + 1} days; at most {settings.HISTORY_MAX_RANGE_DAYS}."
            )
        elif provider is not None and provider.kind == Provider.Kind.YAHOO and interval == "1m":
            earliest = today - timedelta(days=yahoo.INTRADAY_LOOKBACK_DAYS - 1)
            if end_d < earliest:
                errors.setdefault("start", []).append(
                    f"Yahoo keeps 1-minute bars for the last 30 days only (from {earliest} here); "
                    f"{start_d}..{end_d} is older."
                )
            elif start_d < earliest:
                warnings.append(
                    f"Yahoo keeps 1-minute bars for the last 30 days only; start moved from {start_d} to {earliest}."
                )
                start_d = earliest

    targets = _targets(provider, symbol_list, errors, warnings) if provider is not None else []
    if errors:
        message = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in errors.items())
        raise BackfillError(message, errors=errors)
    return BackfillPlan(
        provider=provider, interval=interval, start=start_d, end=end_d, targets=targets, warnings=warnings
    )


def history_client_for(provider: Provider) -> HistoryClient:
    """The history client of a Yahoo or Dhan provider, paced by the provider's shared rate limit."""
    if problems := provider_url_problems(provider.kind, provider.settings):
        raise BackfillError(f"Provider {provider.code}: {' '.join(problems)}")
    conf = provider.effective_settings()
    limiter = rate_limiter_for(provider_code=provider.code, rate=provider.rate_limit, redis_url=settings.REDIS_URL)
    backoff_s = float(conf.get("backoff_s", 1.0))
    if provider.kind == Provider.Kind.DHAN:
        return dhan.DhanHistoryClient(
            rest_url=conf.get("rest_url") or dhan.DEFAULT_REST_URL,
            access_token=str(provider.credentials.get("access_token", "")).strip(),
            client_id=str(provider.credentials.get("client_id", "")).strip(),
            limiter=limiter,
            backoff_s=backoff_s,
        )
    if provider.kind == Provider.Kind.YAHOO:
        return yahoo.YahooHistoryClient(
            rest_url=conf.get("rest_url") or yahoo.DEFAULT_REST_URL, limiter=limiter, backoff_s=backoff_s
        )
    raise BackfillError(f"Provider {provider.code} has no history API.")


def fetch_intraday(*, client: HistoryClient, target: Target, start: date, end: date):
    """1-minute bars of one instrument over the exchange-local dates [start, end]."""
    mapping = target.mapping
    if isinstance(client, dhan.DhanHistoryClient):
        return client.intraday(
            security_id=mapping.search_code,
            segment=mapping.segment,
            instrument=dhan.DHAN_INSTRUMENTS[target.instrument.instrument_type.code],
            start=start,
            end=end,
        )
    return client.intraday(symbol=mapping.search_code, start=start, end=end)


def fetch_daily(*, client: HistoryClient, target: Target, start: date, end: date):
    """Daily bars of one instrument over the exchange-local dates [start, end]."""
    mapping = target.mapping
    if isinstance(client, dhan.DhanHistoryClient):
        return client.daily(
            security_id=mapping.search_code,
            segment=mapping.segment,
            instrument=dhan.DHAN_INSTRUMENTS[target.instrument.instrument_type.code],
            start=start,
            end=end,
        )
    return client.daily(symbol=mapping.search_code, start=start, end=end)


def backfill_run(*, plan: BackfillPlan, progress: Progress | None = None) -> dict:
    """Fetch and upsert every target of a validated plan; returns what happened, per instrument."""
    client = history_client_for(plan.provider)
    result: dict = {
        "provider": plan.provider.code,
        "interval": plan.interval,
        "start": plan.start.isoformat(),
        "end": plan.end.isoformat(),
        "instruments": len(plan.targets),
        "rows": 0,
        "per_instrument": {},
        "warnings": list(plan.warnings),
        "errors": [],
    }
    total = len(plan.targets)
    if progress:
        progress(0, total)
    for done, target in enumerate(plan.targets, start=1):
        try:
            if plan.interval == "1d":
                bars = fetch_daily(client=client, target=target, start=plan.start, end=plan.end)
                rows = daily_history_upsert(instrument_id=target.instrument.pk, provider_id=plan.provider.pk, bars=bars)
            else:
                bars = fetch_intraday(client=client, target=target, start=plan.start, end=plan.end)
                rows = intraday_history_upsert(
                    instrument_id=target.instrument.pk, provider_id=plan.provider.pk, bars=bars
                )
        except HistoryFetchError as exc:
            logger.warning("backfill %s %s: %s", plan.provider.code, target.label, exc)
            result["errors"].append(f"{target.label}: {exc}")
        else:
            result["rows"] += rows
            result["per_instrument"][target.label] = rows
            if not rows:
                result["warnings"].append(f"{target.label}: {plan.provider.code} returned no bars.")
        if progress:
            progress(done, total)
    return result


def backfill(
    *,
    provider_code: str,
    interval: str,
    start: date | str | None = None,
    end: date | str | None = None,
    symbols: Iterable[str] | str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Backfill price history from a provider (YF or DHAN) at ``1m`` or ``1d``; idempotent.

    Raises ``BackfillError`` for bad arguments before anything is fetched or written. Returns a
    JSON-safe dict: provider, interval, start, end, instruments, rows, per_instrument, warnings
    and errors (instruments whose fetch failed).
    """
    plan = backfill_plan(provider_code=provider_code, interval=interval, start=start, end=end, symbols=symbols)
    return backfill_run(plan=plan, progress=progress)
