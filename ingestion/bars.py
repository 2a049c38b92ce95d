"""One-minute bar aggregation and the latest-quote state, both per instrument, in memory.

The engine owns one ``BarAggregator``; the tick store persists what it produces (the
``Bar`` and ``Quote`` types belong to ``marketdata.live.types``). Times are UTC epoch milliseconds throughout.
"""

from __future__ import annotations

from marketdata.live.types import MINUTE_MS, Bar, Quote, minute_floor

__all__ = ["MINUTE_MS", "Bar", "BarAggregator", "Quote", "minute_floor"]


class BarAggregator:
    """Builds 1-minute bars from ticks and closes them on the minute boundary.

    A tick older than the instrument's open bar cannot change a closed bar here (that bar
    may already be persisted): it is counted in ``late`` and dropped.
    """

    def __init__(self) -> None:
        self.open_bars: dict[int, Bar] = {}
        self.late = 0

    def add(self, instrument_id: int, ts: int, price: float, volume: int, provider: str = "") -> Bar | None:
        """Fold one trade into its bar; returns the bar it closed, if the tick opened a new one."""
        start = ts - ts % MINUTE_MS
        bar = self.open_bars.get(instrument_id)
        if bar is None:
            self.open_bars[instrument_id] = Bar(
                instrument_id, start, price, price, price, price, volume, 1, "1m", provider
            )
            return None
        if start == bar.ts:
            if price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            bar.close = price
            bar.volume += volume
            bar.trades += 1
            return None
        if start < bar.ts:
            self.late += 1
            return None
        self.open_bars[instrument_id] = Bar(instrument_id, start, price, price, price, price, volume, 1, "1m", provider)
        return bar

    def close_due(self, now_ms: int) -> list[Bar]:
        """Close every open bar whose minute has ended by ``now_ms`` (quiet instruments too)."""
        current = now_ms - now_ms % MINUTE_MS
        closed = [bar for bar in self.open_bars.values() if bar.ts < current]
        for bar in closed:
            del self.open_bars[bar.instrument_id]
        return closed

    def restore(self, bars: list[Bar]) -> None:
        """Reinstate open bars saved before a restart."""
        for bar in bars:
            self.open_bars[bar.instrument_id] = bar
