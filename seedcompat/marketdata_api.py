"""The seed's market data routes: ``marketdata/intraday/{symbol}``, ``marketdata/daily/{symbol}``,
``marketdata/prev_close/{exchange}``.

Thin views over ``marketdata.selectors`` and the tick store. The seed front end's chart asks
once per symbol, with no query parameters, and sorts the rows itself; like the seed, rows come
newest first, as a bare array:

* ``{symbol}`` is a compat symbol (``seedcompat.symbols``: ``AAPL``, ``XYZ.NSE``, ``NSE:XYZ``);
  admins also reach inactive instruments, as on the seed. Unknown: 404 ``Instrument not found``.
* intraday: 5-minute bars (the seed's base interval) of the last ``INTRADAY_DAYS`` days, today's
  bars from the tick store merged over the stored ones.
* daily: the stored trading days of the last ``HISTORY_MAX_RANGE_DAYS`` days, plus today's
  session from the instrument's live quote (patched over a stored row of the same date, never a
  second row). ``datetime`` is 00:00 UTC of the trading date, as the chart's day buckets are.
* prev_close: per instrument of the exchange, the latest daily close before the exchange's today.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db.models import Q
from django.urls import re_path
from django.utils import timezone
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.permissions import is_admin
from exchanges.models import Exchange
from instruments.models import Instrument
from marketdata.api.history_query import max_daily_days, max_intraday_days
from marketdata.models import PriceHistoryDaily
from marketdata.selectors import daily_bars, exchange_zone, intraday_bars, live_minutes
from seedcompat.common import SeedApiView, seed_datetime
from seedcompat.symbols import (
    AmbiguousSymbolError,
    InstrumentNotFoundError,
    compat_symbols,
    instrument_for_compat_symbol,
)

logger = logging.getLogger(__name__)

INTRADAY_INTERVAL = "5m"
INTRADAY_DAYS = 30
# At most this many 5-minute bars a day (a market open around the clock): the limit never cuts a range.
_BARS_PER_DAY = 24 * 12


def _instrument(request: Request, symbol: str) -> Instrument:
    try:
        return instrument_for_compat_symbol(symbol, include_inactive=is_admin(request.user))
    except AmbiguousSymbolError as exc:
        raise NotFound(f"Instrument not found: {exc}") from None
    except InstrumentNotFoundError:
        raise NotFound("Instrument not found") from None


def _row(instrument: Instrument, bar: dict[str, Any], at: dt.datetime, **extra: Any) -> dict[str, Any]:
    return {
        "instrument_id": instrument.pk,
        "datetime": seed_datetime(at),
        "open": bar["open"],
        "high": bar["high"],
        "low": bar["low"],
        "close": bar["close"],
        "volume": bar["volume"] or 0,
        "previous_close": bar.get("previous_close"),
        "adj_close": bar.get("adj_close"),
        "deliver_percentage": bar.get("delivery_percentage"),
        **extra,
    }


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _live_quote(instrument: Instrument):
    """The instrument's quote from the tick store, or None (none yet, or the store is unreachable)."""
    from marketdata.live.store.sync import latest_quotes

    try:
        return latest_quotes([instrument.pk]).get(instrument.pk)
    except Exception:  # Redis down: the stored history still answers
        logger.warning("tick store unreachable; daily bars without the live session", exc_info=True)
        return None


class IntradayApi(SeedApiView):
    """5-minute bars of the last ``INTRADAY_DAYS`` days, newest first."""

    def get(self, request: Request, symbol: str) -> Response:
        instrument = _instrument(request, symbol)
        days = min(INTRADAY_DAYS, max_intraday_days())
        end = timezone.now()
        start = end - dt.timedelta(days=days)
        bars = intraday_bars(
            instrument=instrument,
            start=start,
            end=end,
            interval=INTRADAY_INTERVAL,
            limit=(days + 1) * _BARS_PER_DAY,
            live_bars=live_minutes(instrument_id=instrument.pk, start=start, end=end),
        )
        return Response([_row(instrument, bar, bar["timestamp"], interval=INTRADAY_INTERVAL) for bar in reversed(bars)])


class DailyApi(SeedApiView):
    """Daily bars (one per trading date) up to today's live session, newest first."""

    def get(self, request: Request, symbol: str) -> Response:
        instrument = _instrument(request, symbol)
        zone = exchange_zone(instrument.exchange)
        today = timezone.now().astimezone(zone).date()
        days = max_daily_days()
        bars = daily_bars(
            instrument=instrument,
            start_date=today - dt.timedelta(days=days),
            end_date=today,
            limit=days + 2,
        )
        quote = _live_quote(instrument)
        if quote is not None:
            session = dt.datetime.fromtimestamp(quote.ts / 1000, dt.UTC).astimezone(zone).date()
            live = {
                "open": quote.open,
                "high": quote.high,
                "low": quote.low,
                "close": quote.last,
                "volume": quote.volume,
                "previous_close": quote.previous_close,
            }
            if bars and bars[-1]["timestamp"] == session:
                # The quote is the fresher state of the same session: it wins, the stored extras stay.
                bars[-1] = {**bars[-1], **{k: v for k, v in live.items() if v is not None}}
            elif session <= today and (not bars or bars[-1]["timestamp"] < session):
                bars.append({"timestamp": session, **live})
        return Response([_row(instrument, bar, _day_start(bar["timestamp"])) for bar in reversed(bars)])


class PrevCloseApi(SeedApiView):
    """``{"exchange_code", "data": [{symbol, price, timestamp}]}``: the latest close before today, per instrument."""

    def get(self, request: Request, exchange: str) -> Response:
        found = Exchange.objects.filter(code__iexact=exchange.strip()).first() if "\x00" not in exchange else None
        if found is None or not (found.is_active or is_admin(request.user)):
            raise NotFound("Exchange not found")
        today = timezone.now().astimezone(exchange_zone(found)).date()
        visible = Q() if is_admin(request.user) else Q(instrument__is_active=True)
        rows = list(
            PriceHistoryDaily.objects.filter(visible, instrument__exchange=found, date__lt=today)
            .order_by("instrument_id", "-date")
            .distinct("instrument_id")
            .values_list("instrument_id", "close", "date")
        )
        instruments = Instrument.objects.select_related("exchange").filter(pk__in=[row[0] for row in rows])
        symbols = compat_symbols(instruments)
        data = [
            {"symbol": symbols[pk], "price": close, "timestamp": seed_datetime(_day_start(day))}
            for pk, close, day in rows
            if pk in symbols
        ]
        return Response({"exchange_code": found.code, "data": data})


urlpatterns = [
    re_path(r"^marketdata/intraday/(?P<symbol>[^/]+)/?$", IntradayApi.as_view(), name="seed-marketdata-intraday"),
    re_path(r"^marketdata/daily/(?P<symbol>[^/]+)/?$", DailyApi.as_view(), name="seed-marketdata-daily"),
    re_path(
        r"^marketdata/prev_close/(?P<exchange>[^/]+)/?$", PrevCloseApi.as_view(), name="seed-marketdata-prev-close"
    ),
]
