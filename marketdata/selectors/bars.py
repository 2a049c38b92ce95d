"""What the history selectors share: the intervals, the bar shape, and the raw-SQL fetch of bars.

These sit on the hot read path, so they return plain dicts (from ``values_list`` or raw SQL),
never model instances. Every instant is a timezone-aware UTC ``datetime``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, TypedDict

from django.db import connection

UTC = dt.UTC

INTERVALS: dict[str, dt.timedelta] = {
    "1m": dt.timedelta(minutes=1),
    "5m": dt.timedelta(minutes=5),
    "15m": dt.timedelta(minutes=15),
    "30m": dt.timedelta(minutes=30),
    "1h": dt.timedelta(hours=1),
}
STORED_INTERVAL = "1m"

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


def _columns(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


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
