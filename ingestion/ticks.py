"""The one normalized shape every provider's data takes inside the platform."""

from __future__ import annotations

from dataclasses import dataclass


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
