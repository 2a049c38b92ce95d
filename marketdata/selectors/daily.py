"""Daily bars, by trading date (exchange-local)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection

from instruments.models import Instrument
from marketdata.models import PriceHistoryDaily
from marketdata.selectors.bars import BAR_FIELDS, Bar, _columns, _fetch_bars

_DAILY_COLUMNS = ("date", *BAR_FIELDS[1:])


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
