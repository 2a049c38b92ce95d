"""The live side of intraday history: today's 1-minute bars from the tick store, merged over stored ones."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from marketdata.selectors.bars import BAR_FIELDS, Bar

# The name the module had before selectors became a package, so log configuration keeps matching.
logger = logging.getLogger("marketdata.selectors")


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
