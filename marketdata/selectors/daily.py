"""Daily bars, by trading date (exchange-local), and their weekly and monthly aggregates.

``PriceHistoryDaily.date`` is the trading date on the exchange's own calendar, so weeks and
months of those dates are weeks and months in the exchange's time zone. Periods:

- ``1d``: the stored rows as they are.
- ``1w``: ISO weeks, Monday to Sunday; ``1mo``: calendar months.

A period's ``timestamp`` is its start date (the Monday, the 1st of the month), whether or not
the exchange traded that day: a stable key that does not move with holidays or with the range.
Per period, like the intraday buckets: ``open`` is the first day's open, ``close`` the last
day's close, ``high``/``low`` the extremes, ``volume`` the sum, ``previous_close`` the first
non-null value (the close before the period), ``adj_close`` and ``delivery_percentage`` the
last non-null value. On PostgreSQL the aggregation is SQL (``date_trunc``); elsewhere
``daily_aggregate`` folds the rows in Python, with the same answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.db import connection

from instruments.models import Instrument
from marketdata.models import PriceHistoryDaily
from marketdata.selectors.bars import BAR_FIELDS, Bar, _columns, _fetch_bars

_DAILY_COLUMNS = ("date", *BAR_FIELDS[1:])

DAILY_INTERVAL = "1d"
# Interval -> PostgreSQL date_trunc field (None: the stored rows).
DAILY_INTERVALS: dict[str, str | None] = {"1d": None, "1w": "week", "1mo": "month"}


def period_start(day: dt.date, interval: str) -> dt.date:
    """The first day of the period holding ``day``: itself, its ISO week's Monday, or its month's 1st."""
    if interval == "1w":
        return day - dt.timedelta(days=day.weekday())
    if interval == "1mo":
        return day.replace(day=1)
    return day


def period_end(day: dt.date, interval: str) -> dt.date:
    """The last day of the period holding ``day`` (included)."""
    if interval == "1w":
        return period_start(day, interval) + dt.timedelta(days=6)
    if interval == "1mo":
        first_of_next = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return first_of_next - dt.timedelta(days=1)
    return day


def daily_aggregate(rows: Iterable[Mapping[str, Any]], *, interval: str) -> Iterator[Bar]:
    """Fold daily bars, sorted by date, into periods of ``interval`` (the Python twin of the SQL)."""
    current: Bar | None = None
    for row in rows:
        start = period_start(row["timestamp"], interval)
        if current is None or current["timestamp"] != start:
            if current is not None:
                yield current
            current = {
                "timestamp": start,
                "open": row["open"],
                "high": row["high"],
                "low": row["low"],
                "close": row["close"],
                "volume": row["volume"] or 0,
                "previous_close": row.get("previous_close"),
                "adj_close": row.get("adj_close"),
                "delivery_percentage": row.get("delivery_percentage"),
            }
            continue
        current["high"] = max(current["high"], row["high"])
        current["low"] = min(current["low"], row["low"])
        current["close"] = row["close"]
        current["volume"] += row["volume"] or 0
        if current["previous_close"] is None:
            current["previous_close"] = row.get("previous_close")
        for key in ("adj_close", "delivery_percentage"):
            if row.get(key) is not None:
                current[key] = row[key]
    if current is not None:
        yield current


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


def daily_aggregate_sql(
    *, instrument_id: int, start_date: dt.date, end_date: dt.date, interval: str
) -> tuple[str, list[Any]]:
    """The PostgreSQL query for weekly/monthly bars of days in [start_date, end_date]; the caller appends LIMIT."""
    field = DAILY_INTERVALS[interval]
    if field is None:
        raise ValueError(f"{interval!r} is not an aggregated interval")
    table = PriceHistoryDaily._meta.db_table
    # ``field`` comes from DAILY_INTERVALS, never from the request; date_trunc('week') starts on Monday.
    sql = f"""
        SELECT date_trunc('{field}', "date"::timestamp)::date AS period,
               (array_agg("open" ORDER BY "date"))[1],
               max("high"),
               min("low"),
               (array_agg("close" ORDER BY "date" DESC))[1],
               sum("volume")::bigint,
               (array_agg("previous_close" ORDER BY "date") FILTER (WHERE "previous_close" IS NOT NULL))[1],
               (array_agg("adj_close" ORDER BY "date" DESC) FILTER (WHERE "adj_close" IS NOT NULL))[1],
               (array_agg("delivery_percentage" ORDER BY "date" DESC)
                    FILTER (WHERE "delivery_percentage" IS NOT NULL))[1]
          FROM "{table}"
         WHERE "instrument_id" = %s AND "date" >= %s AND "date" <= %s
         GROUP BY period ORDER BY period LIMIT %s
    """  # noqa: S608 - the model's table name and a fixed date_trunc field only; values are parameters
    return sql, [instrument_id, start_date, end_date]


def daily_bars_sql(
    *,
    instrument: Instrument,
    start_date: dt.date,
    end_date: dt.date,
    after: dt.date | None,
    limit: int,
    interval: str = DAILY_INTERVAL,
) -> tuple[str, list[Any]] | None:
    """PostgreSQL: the query of ``daily_bars`` as (sql, params), or None when no row can match.

    The history route in front of Django (``marketdata.api.history_route``) runs the same
    query on its async connections.
    """
    if interval == DAILY_INTERVAL:
        sql, params = _daily_sql(instrument_id=instrument.pk, start_date=start_date, end_date=end_date, after=after)
        return sql, [*params, limit]
    if after is not None:
        start_date = max(start_date, period_end(after, interval) + dt.timedelta(days=1))
    if start_date > end_date:
        return None
    sql, params = daily_aggregate_sql(
        instrument_id=instrument.pk, start_date=start_date, end_date=end_date, interval=interval
    )
    return sql, [*params, limit]


def daily_bars(
    *,
    instrument: Instrument,
    start_date: dt.date,
    end_date: dt.date,
    after: dt.date | None = None,
    limit: int,
    interval: str = DAILY_INTERVAL,
) -> list[Bar]:
    """Up to ``limit`` bars of ``interval`` over the trading dates in [start_date, end_date], after ``after``.

    ``timestamp`` holds the trading date (``1d``) or the period's start date (``1w``, ``1mo``),
    exchange-local, as a ``date``. For periods, ``after`` is a period's start date: the days of
    that period and earlier ones are skipped. Periods are cut at the range's ends; callers wanting
    whole periods widen the range with ``period_start`` / ``period_end``.
    """
    if connection.vendor == "postgresql":
        query = daily_bars_sql(
            instrument=instrument, start_date=start_date, end_date=end_date, after=after, limit=limit, interval=interval
        )
        if query is None:
            return []
        if interval == DAILY_INTERVAL:
            return _fetch_bars(*query)
        with connection.cursor() as cursor:
            cursor.execute(*query)
            return [dict(zip(BAR_FIELDS, row, strict=True)) for row in cursor.fetchall()]  # type: ignore[misc]
    if interval != DAILY_INTERVAL:
        if after is not None:
            start_date = max(start_date, period_end(after, interval) + dt.timedelta(days=1))
        if start_date > end_date:
            return []
        qs = PriceHistoryDaily.objects.filter(instrument=instrument, date__gte=start_date, date__lte=end_date)
        rows = (
            dict(zip(BAR_FIELDS, row, strict=True))
            for row in qs.order_by("date").values_list(*_DAILY_COLUMNS).iterator(chunk_size=2000)
        )
        out: list[Bar] = []
        for bar in daily_aggregate(rows, interval=interval):
            if len(out) == limit:
                break
            out.append(bar)
        return out
    qs = PriceHistoryDaily.objects.filter(instrument=instrument, date__gte=start_date, date__lte=end_date)
    if after is not None:
        qs = qs.filter(date__gt=after)
    rows = qs.order_by("date").values_list(*_DAILY_COLUMNS)[:limit]
    return [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows]  # type: ignore[misc]
