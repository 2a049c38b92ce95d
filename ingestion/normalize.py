"""From provider ticks to trades the bars can use: volume deltas, duplicates, sessions.

Providers send cumulative day volume (Yahoo ``day_volume``, Dhan quote volume). Summing it
into bars was the seed design's inflated-volume bug; here each tick's volume is the
difference from the previous cumulative value of that instrument. The last cumulative value
lives in the tick store so that after a restart the first tick neither zeroes nor doubles.
A first sighting counts only the day's first trade (trade size == cumulative); a new trading
day counts its whole cumulative.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestion.ticks import Tick

# Dhan sends the day volume as an unsigned 32-bit field; a drop from near 2^32 to near zero is
# the counter wrapping, not a new session or a stale update.
WRAP = 2**32
WRAP_HIGH = WRAP - 2**28
WRAP_LOW = 2**28


@dataclass(slots=True)
class _Last:
    ts: int
    price: float
    cum: int | None
    size: int | None


class VolumeNormalizer:
    """Turns a tick into the traded volume since the previous tick of the same instrument."""

    def __init__(self, cumulative: dict[int, int] | None = None) -> None:
        # instrument id -> last cumulative day volume seen (restored from the tick store)
        self.cumulative: dict[int, int] = dict(cumulative or {})
        self._last: dict[int, _Last] = {}
        self.duplicates = 0

    def volume_of(self, tick: Tick, *, new_session: bool = False) -> int | None:
        """The volume this tick adds, or ``None`` when the tick repeats the previous one."""
        iid = tick.instrument_id
        last = self._last.get(iid)
        if (
            last is not None
            and last.ts == tick.ts
            and last.price == tick.price
            and last.cum == tick.day_volume
            and last.size == tick.size
        ):
            self.duplicates += 1
            return None
        self._last[iid] = _Last(tick.ts, tick.price, tick.day_volume, tick.size)

        if tick.day_volume is None:
            return max(tick.size or 0, 0)
        cum = tick.day_volume
        previous = self.cumulative.get(iid)
        self.cumulative[iid] = cum
        if new_session:
            # A trading day began since the last cumulative we stored: the count restarted, and
            # everything in it is this session's (even when it already passed yesterday's total).
            return max(cum, 0)
        if previous is None:
            # First sight of this instrument. The day's first trade (its size is the whole
            # cumulative) is ours to count; otherwise the volume before it belongs to no bar of ours.
            return cum if tick.size is not None and cum == tick.size and cum > 0 else 0
        if cum >= previous:
            return cum - previous
        if previous >= WRAP_HIGH and cum < WRAP_LOW:
            # A 32-bit cumulative counter (Dhan) wrapped past 2^32: the session goes on.
            return cum + WRAP - previous
        # Within a session a lower value is a stale or out-of-order update: add nothing.
        self.cumulative[iid] = previous
        return 0
