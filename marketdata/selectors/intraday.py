"""Intraday bars at any interval, built from the stored 1-minute bars.

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
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from django.db import connection

from exchanges.models import Exchange
from instruments.models import Instrument
from instruments.symbols import exchange_zone
from marketdata.models import PriceHistoryIntraday
from marketdata.selectors.bars import BAR_FIELDS, INTERVALS, STORED_INTERVAL, UTC, Bar, _columns, _fetch_bars
from marketdata.selectors.live import _merge_live


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


def intraday_bars_sql(
    *,
    instrument: Instrument,
    start: dt.datetime,
    end: dt.datetime,
    interval: str,
    after: dt.datetime | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """PostgreSQL: the query of ``intraday_bars`` without live bars, as (sql, params).

    The history route in front of Django (``marketdata.api.history_route``) runs the same
    query on its async connections.
    """
    if interval == STORED_INTERVAL:
        return _minutes_sql(instrument_id=instrument.pk, start=start, end=end, after=after, limit=limit)
    return intraday_aggregate_sql(
        instrument_id=instrument.pk,
        start=start,
        end=end,
        stride=INTERVALS[interval],
        origin=bin_origin(exchange=instrument.exchange, start=start),
        after=after,
        limit=limit,
    )


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
    if not live and connection.vendor == "postgresql":
        sql, params = intraday_bars_sql(
            instrument=instrument, start=start, end=end, interval=interval, after=after, limit=limit
        )
        if interval == STORED_INTERVAL:
            return _fetch_bars(sql, params)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [dict(zip(BAR_FIELDS, row, strict=True)) for row in cursor.fetchall()]  # type: ignore[misc]
    if not live and interval == STORED_INTERVAL:
        rows = _stored_minutes(instrument=instrument, start=start, end=end, after=after)[:limit]
        return [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows]  # type: ignore[misc]
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
