"""Reads of price history: instrument lookup by symbol, intraday bars at any interval, daily bars.

These sit on the hot read path, so they return plain dicts (from ``values_list`` or raw SQL),
never model instances. Every instant is a timezone-aware UTC ``datetime``.

Coarser intervals are derived from the stored 1-minute bars (``interval='1m'`` rows): on
PostgreSQL in SQL with ``date_bin``, elsewhere (SQLite, the embedded mode) in Python with
``bars_aggregate``; both give the same answer. Per bucket: ``open`` is the first bar's open,
``close`` the last bar's close, ``high``/``low`` the extremes, ``volume`` the sum,
``previous_close`` the first non-null value (it is the prior session's close, the same on every
bar of a day), ``adj_close`` and ``delivery_percentage`` the last non-null value (both describe
the latest state, like ``close``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connection
from django.db.models.signals import post_delete, post_save

from exchanges.models import Exchange
from instruments.models import Instrument
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

UTC = dt.UTC

INTERVALS: dict[str, dt.timedelta] = {
    "1m": dt.timedelta(minutes=1),
    "5m": dt.timedelta(minutes=5),
    "15m": dt.timedelta(minutes=15),
    "30m": dt.timedelta(minutes=30),
    "1h": dt.timedelta(hours=1),
}
STORED_INTERVAL = "1m"
logger = logging.getLogger(__name__)

BAR_FIELDS = (
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "previous_close",
    "adj_close",
    "delivery_percentage",
)
_DAILY_COLUMNS = ("date", *BAR_FIELDS[1:])


class Bar(TypedDict):
    """One bar as the history API returns it; ``timestamp`` is the open instant (a date for daily bars)."""

    timestamp: Any
    open: float
    high: float
    low: float
    close: float
    volume: int
    previous_close: float | None
    adj_close: float | None
    delivery_percentage: float | None


class AmbiguousSymbolError(Exception):
    """A symbol listed on several exchanges was asked for without naming the exchange."""

    def __init__(self, symbol: str, exchanges: list[str]) -> None:
        self.symbol = symbol
        self.exchanges = exchanges
        super().__init__(
            f"Symbol '{symbol}' is listed on several exchanges ({', '.join(exchanges)}); "
            f"pass exchange= or write it as '{exchanges[0]}:{symbol}'."
        )


class InstrumentNotFoundError(Exception):
    """No active instrument matches the symbol (on the given exchange)."""


def _exchange_code(exchange: str) -> str | None:
    """The stored code of an active exchange, matched case-insensitively, or None."""
    return Exchange.objects.filter(code__iexact=exchange.strip(), is_active=True).values_list("code", flat=True).first()


class _InstrumentCache:
    """Resolved (symbol, exchange) -> Instrument for a few seconds, per process.

    The history endpoints resolve the same few symbols on every request; the two lookup
    queries cost more than reading the bars (PostgreSQL spends most of them planning the
    join). Only successful resolutions are kept, so a new listing is seen at once; any save
    or delete of an instrument or exchange in this process empties the cache, and other
    processes see such a change within ``HISTORY_INSTRUMENT_CACHE_S`` (as the live feed's
    ``WS_SYMBOL_CACHE_TTL_S``). ``0`` turns it off. Cached instruments are shared: read-only.
    """

    max_entries = 10_000

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, Instrument]] = {}

    def get(self, key: tuple[str, str]) -> Instrument | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[str, str], instrument: Instrument, ttl_s: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + ttl_s, instrument)

    def clear(self, **_signal_kwargs) -> None:
        self._entries.clear()


_instrument_cache = _InstrumentCache()
for _model in ("instruments.Instrument", "exchanges.Exchange"):
    post_save.connect(_instrument_cache.clear, sender=_model, dispatch_uid=f"history-instrument-cache-{_model}")
    post_delete.connect(_instrument_cache.clear, sender=_model, dispatch_uid=f"history-instrument-cache-d-{_model}")


def instrument_for_symbol(*, symbol: str, exchange: str | None = None) -> Instrument:
    """The active instrument behind ``symbol`` (``AAPL`` or ``NASDAQ:AAPL``) on ``exchange`` (a code).

    Symbols may themselves contain ``:``, so ``X:Y`` is only split when ``X`` is an exchange
    code. An exact symbol match wins over a case-insensitive one. Raises
    ``InstrumentNotFoundError`` (unknown symbol or exchange) or ``AmbiguousSymbolError`` (listed
    on several exchanges and none named). Resolutions are cached briefly (``_InstrumentCache``).
    """
    ttl_s = float(getattr(settings, "HISTORY_INSTRUMENT_CACHE_S", 30.0))
    key = (symbol, exchange or "")
    if ttl_s > 0 and (hit := _instrument_cache.get(key)) is not None:
        return hit
    instrument = _resolve_instrument(symbol=symbol, exchange=exchange)
    if ttl_s > 0:
        _instrument_cache.put(key, instrument, ttl_s)
    return instrument


def _resolve_instrument(*, symbol: str, exchange: str | None) -> Instrument:
    symbol = symbol.strip()
    exchange = (exchange or "").strip() or None
    if "\x00" in symbol or "\x00" in (exchange or ""):
        # No symbol holds a NUL, and PostgreSQL refuses one in a query parameter.
        raise InstrumentNotFoundError(f"Unknown symbol {symbol!r}.")
    if exchange is None and ":" in symbol:
        prefix, rest = symbol.split(":", 1)
        code = _exchange_code(prefix)
        if code is not None and rest:
            found = _instruments(symbol=rest, exchange_code=code)
            if found:
                return found[0]
    if exchange is not None:
        code = _exchange_code(exchange)
        if code is None:
            raise InstrumentNotFoundError(f"Unknown exchange '{exchange}'.")
        if symbol.upper().startswith(code.upper() + ":"):
            symbol = symbol[len(code) + 1 :]
        found = _instruments(symbol=symbol, exchange_code=code)
        if not found:
            raise InstrumentNotFoundError(f"Unknown symbol '{symbol}' on {code}.")
        return found[0]
    found = _instruments(symbol=symbol, exchange_code=None)
    if not found:
        raise InstrumentNotFoundError(f"Unknown symbol '{symbol}'.")
    if len(found) > 1:
        raise AmbiguousSymbolError(symbol, sorted(i.exchange.code for i in found))
    return found[0]


def _instruments(*, symbol: str, exchange_code: str | None) -> list[Instrument]:
    """Active instruments with this symbol: exact matches, else case-insensitive ones."""
    base = Instrument.objects.filter(is_active=True, exchange__is_active=True).select_related("exchange")
    if exchange_code is not None:
        base = base.filter(exchange__code=exchange_code)
    found = list(base.filter(symbol=symbol)[:20])
    return found or list(base.filter(symbol__iexact=symbol)[:20])


def exchange_zone(exchange: Exchange) -> ZoneInfo:
    """The exchange's time zone; UTC if the stored name is not a known zone."""
    try:
        return ZoneInfo(exchange.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def bin_origin(*, exchange: Exchange, start: dt.datetime) -> dt.datetime:
    """The instant coarser bars are aligned to: the session open the day before ``start``.

    Aligning to the open makes NSE hour bars start at 09:15 IST rather than on the UTC hour.
    All intervals divide an hour and DST moves clocks by an hour, so one origin keeps bars
    aligned to the open on every day of the range. The day before ``start`` keeps the origin
    at or before every bar. Exchanges without an open time (24 hours) align to the UTC epoch.
    """
    if exchange.market_open is None:
        return dt.datetime(1970, 1, 1, tzinfo=UTC)
    zone = exchange_zone(exchange)
    day = start.astimezone(zone).date() - dt.timedelta(days=1)
    return dt.datetime.combine(day, exchange.market_open, tzinfo=zone).astimezone(UTC)


def bars_aggregate(bars: Iterable[Mapping[str, Any]], *, stride: dt.timedelta, origin: dt.datetime) -> Iterator[Bar]:
    """Fold 1-minute bars, sorted by timestamp, into ``stride`` buckets aligned to ``origin``.

    The Python twin of the ``date_bin`` query (used on SQLite and when live bars are merged).
    A bucket is yielded once the next one starts, so a caller may stop after the first few.
    """
    current: Bar | None = None
    for bar in bars:
        ts = bar["timestamp"]
        bucket = origin + ((ts - origin) // stride) * stride
        if current is None or current["timestamp"] != bucket:
            if current is not None:
                yield current
            current = {
                "timestamp": bucket,
                "open": bar["open"],
                "high": bar["high"],
                "low": bar["low"],
                "close": bar["close"],
                "volume": bar["volume"] or 0,
                "previous_close": bar.get("previous_close"),
                "adj_close": bar.get("adj_close"),
                "delivery_percentage": bar.get("delivery_percentage"),
            }
            continue
        current["high"] = max(current["high"], bar["high"])
        current["low"] = min(current["low"], bar["low"])
        current["close"] = bar["close"]
        current["volume"] += bar["volume"] or 0
        if current["previous_close"] is None:
            current["previous_close"] = bar.get("previous_close")
        for key in ("adj_close", "delivery_percentage"):
            if bar.get(key) is not None:
                current[key] = bar[key]
    if current is not None:
        yield current


def _stored_minutes(*, instrument: Instrument, start: dt.datetime, end: dt.datetime, after: dt.datetime | None):
    """Stored 1-minute rows in [start, end) (and after ``after``), ascending: one index range scan."""
    qs = PriceHistoryIntraday.objects.filter(
        instrument=instrument, interval=STORED_INTERVAL, timestamp__gte=start, timestamp__lt=end
    )
    if after is not None:
        qs = qs.filter(timestamp__gt=after)
    return qs.order_by("timestamp").values_list(*BAR_FIELDS)


def _columns(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _minutes_sql(
    *, instrument_id: int, start: dt.datetime, end: dt.datetime, after: dt.datetime | None, limit: int
) -> tuple[str, list[Any]]:
    """``_stored_minutes`` as plain SQL (the same index range scan), without the ORM's per-call work."""
    table = PriceHistoryIntraday._meta.db_table
    sql = f"""SELECT {_columns(BAR_FIELDS)} FROM "{table}"
         WHERE "instrument_id" = %s AND "interval" = %s AND "timestamp" >= %s AND "timestamp" < %s"""  # noqa: S608 - model table name only
    params: list[Any] = [instrument_id, STORED_INTERVAL, start, end]
    if after is not None:
        sql += ' AND "timestamp" > %s'
        params.append(after)
    return sql + ' ORDER BY "timestamp" LIMIT %s', [*params, limit]


def _daily_sql(
    *, instrument_id: int, start_date: dt.date, end_date: dt.date, after: dt.date | None
) -> tuple[str, list[Any]]:
    """Daily rows in [start_date, end_date] after ``after``, ascending; the caller appends the LIMIT value."""
    table = PriceHistoryDaily._meta.db_table
    sql = f"""SELECT {_columns(_DAILY_COLUMNS)} FROM "{table}"
         WHERE "instrument_id" = %s AND "date" >= %s AND "date" <= %s"""  # noqa: S608 - model table name only
    params: list[Any] = [instrument_id, start_date, end_date]
    if after is not None:
        sql += ' AND "date" > %s'
        params.append(after)
    return sql + ' ORDER BY "date" LIMIT %s', params


def _fetch_bars(sql: str, params: list[Any]) -> list[Bar]:
    """Run a bars query on PostgreSQL; rows become ``Bar`` dicts (the hot path skips the ORM).

    Django registers a pure-Python ``timestamptz`` loader on its connections (to set its own
    tzinfo); on this cursor psycopg's own (C) loader reads the timestamps instead, several
    times faster. The session time zone is UTC (Django sets it), so they come back UTC-aware.
    """
    with connection.cursor() as cursor:
        _fast_timestamptz(cursor.cursor)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows]  # type: ignore[misc]


def _fast_timestamptz(cursor) -> None:
    """Use psycopg's default (compiled, when psycopg-binary is installed) timestamptz loader."""
    import psycopg
    from psycopg import pq

    info = psycopg.postgres.types["timestamptz"]
    cursor.adapters.register_loader(info.oid, psycopg.postgres.adapters.get_loader(info.oid, pq.Format.TEXT))


def intraday_aggregate_sql(
    *,
    instrument_id: int,
    start: dt.datetime,
    end: dt.datetime,
    stride: dt.timedelta,
    origin: dt.datetime,
    after: dt.datetime | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The PostgreSQL ``date_bin`` query for coarser bars, as (sql, params).

    The WHERE clause is a range on the unique (instrument, interval, timestamp) index. A bucket
    after the cursor holds only rows after it, so the cursor narrows the scan as well.
    """
    table = PriceHistoryIntraday._meta.db_table
    bucket = 'date_bin(%s::interval, "timestamp", %s::timestamptz)'
    params: list[Any] = [stride, origin, instrument_id, STORED_INTERVAL, start, end]
    sql = f"""
        SELECT {bucket} AS bucket,
               (array_agg("open" ORDER BY "timestamp"))[1],
               max("high"),
               min("low"),
               (array_agg("close" ORDER BY "timestamp" DESC))[1],
               sum("volume")::bigint,
               (array_agg("previous_close" ORDER BY "timestamp") FILTER (WHERE "previous_close" IS NOT NULL))[1],
               (array_agg("adj_close" ORDER BY "timestamp" DESC) FILTER (WHERE "adj_close" IS NOT NULL))[1],
               (array_agg("delivery_percentage" ORDER BY "timestamp" DESC)
                    FILTER (WHERE "delivery_percentage" IS NOT NULL))[1]
          FROM {table}
         WHERE "instrument_id" = %s AND "interval" = %s AND "timestamp" >= %s AND "timestamp" < %s
    """  # noqa: S608 - only the model's own table name is interpolated; values are parameters
    if after is not None:
        sql += ' AND "timestamp" > %s'
        params.append(after)
    sql += " GROUP BY bucket"
    if after is not None:
        sql += f" HAVING {bucket} > %s"
        params += [stride, origin, after]
    sql += " ORDER BY bucket LIMIT %s"
    params.append(limit)
    return sql, params


def _merge_live(stored: Iterable[dict[str, Any]], live: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored 1-minute bars overlaid with live ones; a live bar replaces the stored one at its timestamp."""
    by_ts = {bar["timestamp"]: bar for bar in stored}
    for bar in live:
        by_ts[bar["timestamp"]] = {key: bar.get(key) for key in BAR_FIELDS}
    return [by_ts[ts] for ts in sorted(by_ts)]


def live_minutes(*, instrument_id: int, start: dt.datetime, end: dt.datetime) -> list[Bar]:
    """Today's 1-minute bars from the tick store (not yet, or just, persisted, and the open one).

    Only asked for when the range reaches into the store's retention window; a tick store that
    cannot be reached leaves the answer to what PostgreSQL holds, rather than failing it.
    """
    from marketdata.live.store.base import BAR_RETENTION_MS
    from marketdata.live.store.sync import recent_bars

    now = dt.datetime.now(dt.UTC)
    if end <= now - dt.timedelta(milliseconds=BAR_RETENTION_MS):
        return []
    try:
        bars = recent_bars(instrument_id, int(start.timestamp() * 1000), int(end.timestamp() * 1000))
    except Exception:  # Redis down: stored history still answers
        logger.warning("tick store unreachable; history without today's live bars", exc_info=True)
        return []
    return [
        {
            "timestamp": dt.datetime.fromtimestamp(b.ts / 1000, dt.UTC),
            "open": b.open,
            "high": b.high,
            "low": b.low,
            "close": b.close,
            "volume": b.volume,
            "previous_close": None,
            "adj_close": None,
            "delivery_percentage": None,
        }
        for b in bars
    ]


def intraday_bars(
    *,
    instrument: Instrument,
    start: dt.datetime,
    end: dt.datetime,
    interval: str = STORED_INTERVAL,
    after: dt.datetime | None = None,
    limit: int,
    live_bars: Iterable[Mapping[str, Any]] = (),
) -> list[Bar]:
    """Up to ``limit`` bars of ``interval`` opening in [start, end) and after ``after``, ascending.

    ``live_bars`` are 1-minute bars not persisted yet (mappings shaped like ``Bar`` with an
    aware UTC ``timestamp``); for the same minute they replace the stored bar, being newer.
    Buckets are clipped to the range: only minutes inside [start, end) are aggregated.
    A bucket after the cursor holds only minutes after it, so ``after`` also filters minutes.
    """
    stride = INTERVALS[interval]
    origin = bin_origin(exchange=instrument.exchange, start=start)
    live = [bar for bar in live_bars if start <= bar["timestamp"] < end and (after is None or bar["timestamp"] > after)]
    if not live and interval == STORED_INTERVAL:
        if connection.vendor == "postgresql":
            sql, params = _minutes_sql(instrument_id=instrument.pk, start=start, end=end, after=after, limit=limit)
            return _fetch_bars(sql, params)
        rows = _stored_minutes(instrument=instrument, start=start, end=end, after=after)[:limit]
        return [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows]  # type: ignore[misc]
    if not live and connection.vendor == "postgresql":
        sql, params = intraday_aggregate_sql(
            instrument_id=instrument.pk, start=start, end=end, stride=stride, origin=origin, after=after, limit=limit
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [dict(zip(BAR_FIELDS, row, strict=True)) for row in cursor.fetchall()]  # type: ignore[misc]
    minutes: Iterable[dict[str, Any]] = (
        dict(zip(BAR_FIELDS, row, strict=True))
        for row in _stored_minutes(instrument=instrument, start=start, end=end, after=after).iterator(chunk_size=2000)
    )
    if live:
        minutes = _merge_live(minutes, live)
    if interval == STORED_INTERVAL:
        return list(islice(minutes, limit))  # type: ignore[arg-type]
    buckets = (
        bar
        for bar in bars_aggregate(minutes, stride=stride, origin=origin)
        if after is None or bar["timestamp"] > after
    )
    return list(islice(buckets, limit))


def daily_bars(
    *,
    instrument: Instrument,
    start_date: dt.date,
    end_date: dt.date,
    after: dt.date | None = None,
    limit: int,
) -> list[Bar]:
    """Up to ``limit`` daily bars with trading dates in [start_date, end_date] and after ``after``.

    ``timestamp`` holds the trading date (exchange-local) as a ``date``.
    """
    if connection.vendor == "postgresql":
        sql, params = _daily_sql(instrument_id=instrument.pk, start_date=start_date, end_date=end_date, after=after)
        return _fetch_bars(sql, [*params, limit])
    qs = PriceHistoryDaily.objects.filter(instrument=instrument, date__gte=start_date, date__lte=end_date)
    if after is not None:
        qs = qs.filter(date__gt=after)
    rows = qs.order_by("date").values_list(*_DAILY_COLUMNS)[:limit]
    return [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows]  # type: ignore[misc]
