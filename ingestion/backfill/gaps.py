"""Gap repair: minutes missing inside past sessions, refilled from a provider's history.

A gap is a run of minutes inside a closed regular session (lunch breaks excluded) with no
stored 1-minute bar. Repair asks the instrument's providers in the exchange's order (primary
first: Dhan then Yahoo on NSE/BSE, Yahoo elsewhere) and inserts only bars of missing minutes,
so nothing the live feed recorded is rewritten. A minute without a trade has no bar anywhere:
it stays a gap, and a repair that finds nothing for it writes nothing.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection

from exchanges.selectors import exchange_sessions, exchange_trading_date
from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from ingestion.rollup import session_window
from instruments.models import Instrument
from marketdata.models import PriceHistoryIntraday
from marketdata.selectors import AmbiguousSymbolError, InstrumentNotFoundError, instrument_for_symbol

from . import yahoo
from .base import BackfillError, HistoryFetchError
from .service import Target, fetch_intraday, history_client_for, parse_date, parse_symbols
from .store import intraday_history_upsert

logger = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
DEFAULT_REPAIR_DAYS = 5
Gap = tuple[datetime, datetime]

_GAPS_SQL = f"""
    WITH missing AS (
        SELECT minute
          FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS w(lo, hi)
         CROSS JOIN LATERAL generate_series(w.lo, w.hi - interval '1 minute', interval '1 minute') AS minute
         WHERE NOT EXISTS (
               SELECT 1 FROM {PriceHistoryIntraday._meta.db_table} bar
                WHERE bar."instrument_id" = %(instrument_id)s AND bar."interval" = '1m'
                  AND bar."timestamp" = minute)
    )
    SELECT min(minute), max(minute) + interval '1 minute'
      FROM (SELECT minute, minute - (row_number() OVER (ORDER BY minute)) * interval '1 minute' AS run
              FROM missing) AS runs
     GROUP BY run
     ORDER BY 1
"""  # noqa: S608 - only the model's own table name is interpolated; values are parameters


def _windows(*, instrument: Instrument, start_date: date, end_date: date, now: datetime) -> list[Gap]:
    """The trading minutes of closed sessions as [start, end) pieces, lunch breaks cut out."""
    exchange = instrument.exchange
    pieces: list[Gap] = []
    for session in exchange_sessions(exchange=exchange, start=start_date, end=end_date):
        window = session_window(exchange=exchange, session=session)
        if window.end > now:
            continue  # only past sessions: today's open session is still being recorded
        if session.break_start and session.break_end and not exchange.is_open_24_hours:
            pieces += [(window.start, session.break_start), (session.break_end, window.end)]
        else:
            pieces.append((window.start, window.end))
    return [(lo, hi) for lo, hi in pieces if lo < hi]


def _gaps_python(*, instrument: Instrument, windows: list[Gap]) -> list[Gap]:
    stored = set(
        PriceHistoryIntraday.objects.filter(
            instrument=instrument,
            interval="1m",
            timestamp__gte=min(lo for lo, _ in windows),
            timestamp__lt=max(hi for _, hi in windows),
        ).values_list("timestamp", flat=True)
    )
    gaps: list[Gap] = []
    for lo, hi in windows:
        minute = lo
        while minute < hi:
            if minute not in stored:
                if gaps and gaps[-1][1] == minute:
                    gaps[-1] = (gaps[-1][0], minute + MINUTE)
                else:
                    gaps.append((minute, minute + MINUTE))
            minute += MINUTE
    return gaps


def find_gaps(*, instrument: Instrument, start_date: date, end_date: date, now: datetime | None = None) -> list[Gap]:
    """Runs of missing 1-minute bars inside ``instrument``'s closed sessions from ``start_date`` to
    ``end_date`` (exchange-local dates, inclusive), as UTC ``(start, end)`` pairs, end exclusive.

    Raises ``ValueError`` for dates outside the exchange's calendar.
    """
    now = now or datetime.now(UTC)
    windows = _windows(instrument=instrument, start_date=start_date, end_date=end_date, now=now)
    if not windows:
        return []
    if connection.vendor != "postgresql":
        return _gaps_python(instrument=instrument, windows=windows)
    with connection.cursor() as cursor:
        cursor.execute(
            _GAPS_SQL,
            {
                "starts": [lo for lo, _ in windows],
                "ends": [hi for _, hi in windows],
                "instrument_id": instrument.pk,
            },
        )
        return [(lo.astimezone(UTC), hi.astimezone(UTC)) for lo, hi in cursor.fetchall()]


def _repair_providers(*, instrument: Instrument, provider_code: str | None) -> list[Provider]:
    """Providers that can refill this instrument, in the exchange's order (primary first)."""
    mapped = set(
        ProviderInstrumentMapping.objects.filter(instrument=instrument, is_active=True).values_list(
            "provider_id", flat=True
        )
    )
    rows = ExchangeProviderMapping.objects.filter(
        exchange=instrument.exchange, is_active=True, provider__is_active=True, provider__kind__in=["yahoo", "dhan"]
    ).select_related("provider")
    providers = [row.provider for row in rows if row.provider_id in mapped]
    if provider_code:
        providers = [p for p in providers if p.code.upper() == provider_code.upper()]
    usable = []
    for provider in providers:
        if provider.kind == Provider.Kind.DHAN and not all(
            str(provider.credentials.get(key) or "").strip() for key in ("access_token", "client_id")
        ):
            continue  # a Dhan account without credentials cannot fetch anything
        usable.append(provider)
    return usable


def _gap_dates(*, instrument: Instrument, gaps: list[Gap]) -> tuple[date, date]:
    exchange = instrument.exchange
    return (
        exchange_trading_date(exchange=exchange, at=gaps[0][0]),
        exchange_trading_date(exchange=exchange, at=gaps[-1][1] - MINUTE),
    )


def _refill(*, provider: Provider, instrument: Instrument, gaps: list[Gap], today: date) -> int:
    """Fetch the days spanning ``gaps`` from ``provider`` and insert the bars of missing minutes."""
    mapping = ProviderInstrumentMapping.objects.get(provider=provider, instrument=instrument)
    first, last = _gap_dates(instrument=instrument, gaps=gaps)
    if provider.kind == Provider.Kind.YAHOO:
        first = max(first, today - timedelta(days=yahoo.INTRADAY_LOOKBACK_DAYS - 1))
        if first > last:
            raise HistoryFetchError(f"Yahoo no longer serves 1-minute bars of {last} and before")
    bars = fetch_intraday(
        client=history_client_for(provider),
        target=Target(instrument=instrument, mapping=mapping),
        start=first,
        end=last,
    )
    starts = [lo for lo, _ in gaps]

    def in_gap(ts: datetime) -> bool:
        index = bisect.bisect_right(starts, ts) - 1
        return index >= 0 and ts < gaps[index][1]

    missing = [bar for bar in bars if in_gap(bar.ts)]
    return intraday_history_upsert(
        instrument_id=instrument.pk, provider_id=provider.pk, bars=missing, only_missing=True
    )


def _repair_instruments(symbols: list[str]) -> list[Instrument]:
    if not symbols:
        return list(
            Instrument.objects.filter(
                is_active=True,
                record_data=True,
                blacklisted=False,
                delisted=False,
                provider_mappings__provider__kind__in=["yahoo", "dhan"],
            )
            .distinct()
            .select_related("exchange", "instrument_type")
            .order_by("exchange__code", "symbol")
        )
    found, problems = [], []
    for symbol in symbols:
        try:
            found.append(instrument_for_symbol(symbol=symbol))
        except (InstrumentNotFoundError, AmbiguousSymbolError) as exc:
            problems.append(str(exc))
    if problems:
        raise BackfillError("symbols: " + " ".join(problems), errors={"symbols": problems})
    return found


def repair_gaps(
    *,
    start: date | str | None = None,
    end: date | str | None = None,
    symbols: Iterable[str] | str | None = None,
    provider_code: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Find and refill missing minutes of closed sessions; for a nightly run.

    Defaults: the instruments streamed (``record_data``) through Yahoo or Dhan, over the last
    ``DEFAULT_REPAIR_DAYS`` days. ``provider_code`` restricts the refill to one provider.
    Bad arguments raise ``BackfillError`` before anything is written. Returns a JSON-safe dict:
    instruments, missing_minutes, filled, per_instrument, errors.
    """
    now = now or datetime.now(UTC)
    today = now.date()
    start_d = parse_date(start, "start")
    end_d = parse_date(end, "end") or today
    start_d = start_d or end_d - timedelta(days=DEFAULT_REPAIR_DAYS - 1)
    if start_d > end_d:
        raise BackfillError(f"start: {start_d} is after end {end_d}.", errors={"start": ["after end"]})
    if (end_d - start_d).days + 1 > settings.HISTORY_MAX_RANGE_DAYS:
        raise BackfillError("start: the range is too long.", errors={"start": ["range too long"]})
    if provider_code and not Provider.objects.filter(code__iexact=provider_code, kind__in=["yahoo", "dhan"]).exists():
        raise BackfillError(f"provider: unknown provider '{provider_code}'.", errors={"provider": ["unknown"]})
    instruments = _repair_instruments(parse_symbols(symbols))

    result: dict = {
        "instruments": len(instruments),
        "missing_minutes": 0,
        "filled": 0,
        "per_instrument": {},
        "errors": [],
    }
    for instrument in instruments:
        label = f"{instrument.exchange.code}:{instrument.symbol}"
        try:
            gaps = find_gaps(instrument=instrument, start_date=start_d, end_date=end_d, now=now)
        except ValueError as exc:
            result["errors"].append(f"{label}: {exc}")
            continue
        missing = sum(int((hi - lo) / MINUTE) for lo, hi in gaps)
        if not missing:
            continue
        entry = {"missing": missing, "filled": 0, "provider": None}
        result["per_instrument"][label] = entry
        result["missing_minutes"] += missing
        providers = _repair_providers(instrument=instrument, provider_code=provider_code)
        if not providers:
            result["errors"].append(f"{label}: no Yahoo or Dhan provider can refill it.")
        for provider in providers:
            try:
                entry["filled"] = _refill(provider=provider, instrument=instrument, gaps=gaps, today=today)
            except HistoryFetchError as exc:
                logger.warning("gap repair %s via %s: %s", label, provider.code, exc)
                result["errors"].append(f"{label} via {provider.code}: {exc}")
                continue
            entry["provider"] = provider.code
            result["filled"] += entry["filled"]
            break
    return result
