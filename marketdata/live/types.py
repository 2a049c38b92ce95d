"""The live-data contract's value types: what the feed side writes and the serving side reads.

``Tick`` is the one normalized shape every provider's data takes; ``Bar`` and ``Quote`` are
what the engine derives from ticks and publishes. Times are UTC epoch milliseconds, prices
float64. These are plain dataclasses: no Django, no I/O, nothing about any provider.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MINUTE_MS = 60_000


def minute_floor(ts_ms: int) -> int:
    """The open instant (ms) of the minute containing ``ts_ms``."""
    return ts_ms - ts_ms % MINUTE_MS


@dataclass(slots=True)
class Tick:
    """A trade or quote update for one instrument.

    ``ts`` is UTC epoch milliseconds. Prices are float64. A provider fills ``size`` (last
    trade size) and/or ``day_volume`` (cumulative session volume); the engine turns the
    cumulative value into per-bar deltas.
    """

    instrument_id: int
    provider: str
    ts: int
    price: float
    size: int | None = None
    day_volume: int | None = None
    day_open: float | None = None
    day_high: float | None = None
    day_low: float | None = None
    prev_close: float | None = None
    bid: float | None = None
    ask: float | None = None


@dataclass(slots=True)
class Bar:
    """An OHLCV bar; ``ts`` is its open instant in UTC ms."""

    instrument_id: int
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: int = 0
    trades: int = 0
    interval: str = "1m"
    provider: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Bar:
        return cls(**data)


@dataclass(slots=True)
class Quote:
    """The latest state of one instrument for the current session."""

    instrument_id: int
    ts: int
    last: float
    open: float
    high: float
    low: float
    volume: int = 0
    previous_close: float | None = None
    bid: float | None = None
    ask: float | None = None
    seq: int = 0
    provider: str = ""

    @property
    def change(self) -> float | None:
        return None if self.previous_close in (None, 0) else self.last - self.previous_close

    @property
    def change_percent(self) -> float | None:
        if self.previous_close in (None, 0):
            return None
        return (self.last - self.previous_close) / self.previous_close * 100.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Quote:
        return cls(**data)
