"""Reads of price history: instrument lookup by symbol, intraday bars at any interval, daily bars.

These sit on the hot read path, so they return plain dicts (from ``values_list`` or raw SQL),
never model instances. Every instant is a timezone-aware UTC ``datetime``.

``instruments.symbols`` resolves symbols (re-exported here), ``intraday`` reads (and aggregates) 1-minute bars,
``daily`` reads daily bars (and weeks and months of them), ``live`` adds today's bars from the
tick store, ``snapshot`` reads an exchange's or a watchlist's latest quotes; ``bars`` holds
what they share. The public names are importable from ``marketdata.selectors`` itself.
"""

from instruments.symbols import (
    AmbiguousSymbolError,
    InstrumentNotFoundError,
    exchange_zone,
    instrument_cached,
    instrument_for_symbol,
)
from marketdata.selectors.bars import BAR_FIELDS, INTERVALS, STORED_INTERVAL, Bar
from marketdata.selectors.daily import (
    DAILY_INTERVAL,
    DAILY_INTERVALS,
    daily_aggregate,
    daily_aggregate_sql,
    daily_bars,
    daily_bars_sql,
    period_end,
    period_start,
)
from marketdata.selectors.intraday import (
    bars_aggregate,
    bin_origin,
    intraday_aggregate_sql,
    intraday_bars,
    intraday_bars_sql,
)
from marketdata.selectors.live import live_minutes
from marketdata.selectors.snapshot import (
    SNAPSHOT_MAX_LIMIT,
    SNAPSHOT_ORDERS,
    SNAPSHOT_SORTS,
    Snapshot,
    SnapshotNotFoundError,
    market_snapshot,
)

__all__ = [
    "BAR_FIELDS",
    "DAILY_INTERVAL",
    "DAILY_INTERVALS",
    "INTERVALS",
    "SNAPSHOT_MAX_LIMIT",
    "SNAPSHOT_ORDERS",
    "SNAPSHOT_SORTS",
    "STORED_INTERVAL",
    "AmbiguousSymbolError",
    "Bar",
    "InstrumentNotFoundError",
    "Snapshot",
    "SnapshotNotFoundError",
    "bars_aggregate",
    "bin_origin",
    "daily_aggregate",
    "daily_aggregate_sql",
    "daily_bars",
    "daily_bars_sql",
    "exchange_zone",
    "instrument_cached",
    "instrument_for_symbol",
    "intraday_aggregate_sql",
    "intraday_bars",
    "intraday_bars_sql",
    "live_minutes",
    "market_snapshot",
    "period_end",
    "period_start",
]
