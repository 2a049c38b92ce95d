"""The built-in simulator (SIM): a geometric random walk per instrument.

Each instrument ticks as a Poisson process (``ticks_per_second``, default 2), moves by a
log-normal step scaled from an annual volatility, keeps a cumulative day volume, session
open/high/low and a bid/ask spread of a few ticks. A ``seed`` makes runs reproducible.
With ``follow_sessions`` (the default) it only ticks while the instrument's exchange is in
session; set it false to trade around the clock (tests, benchmarks, a demo at night).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ingestion.ticks import Tick

from .base import FeedClient, FeedStatus, Subscription

logger = logging.getLogger(__name__)

SECONDS_PER_YEAR = 252 * 6.5 * 3600  # trading seconds in a year
DEFAULT_PRICE = 100.0
MAX_SPREAD_TICKS = 3
MIN_INTERVAL_S = 0.001


@dataclass
class _Walk:
    price: float
    open: float
    high: float
    low: float
    prev_close: float
    day_volume: int = 0


class SimulatedFeedClient(FeedClient):
    """Synthetic quotes for demos, tests and benchmarks; no network."""

    kind = "simulated"

    def __init__(self, *, session_check: Callable[[str], Awaitable[bool]] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        seed = self.settings.get("seed")
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self.interval = float(self.settings.get("tick_interval_ms", 250)) / 1000
        self.rate = float(self.settings.get("ticks_per_second", 2.0))
        if self.rate > 0:
            # One draw per instrument per interval gives at most one tick: above 1 / interval
            # the configured rate would be silently capped, so wake up more often instead.
            self.interval = max(MIN_INTERVAL_S, min(self.interval, 1.0 / self.rate))
        self.volatility = float(self.settings.get("volatility", 0.4))
        self.follow_sessions = bool(self.settings.get("follow_sessions", True))
        self.session_check = session_check
        self.walks: dict[int, _Walk] = {}
        self._open_cache: dict[str, tuple[float, bool]] = {}

    def _walk(self, sub: Subscription) -> _Walk:
        walk = self.walks.get(sub.instrument_id)
        if walk is None:
            p = float(sub.reference_price or DEFAULT_PRICE)
            walk = self.walks[sub.instrument_id] = _Walk(p, p, p, p, p)
        return walk

    async def _exchange_open(self, exchange: str) -> bool:
        if not self.follow_sessions or self.session_check is None:
            return True
        now = time.monotonic()
        cached = self._open_cache.get(exchange)
        if cached and now - cached[0] < 30:
            return cached[1]
        try:
            is_open = await self.session_check(exchange)
        except Exception as exc:  # the database is away for a moment: that must not end the feed
            is_open = cached[1] if cached else True
            logger.warning(
                "feed %s: session check of %s failed (%s); assuming open=%s", self.code, exchange, exc, is_open
            )
        self._open_cache[exchange] = (now, is_open)
        return is_open

    def step(self, sub: Subscription, dt: float, now_ms: int) -> Tick:
        """Advance one instrument's walk by ``dt`` seconds and return the resulting tick."""
        walk = self._walk(sub)
        sigma = self.volatility * math.sqrt(dt / SECONDS_PER_YEAR)
        raw = walk.price * math.exp(sigma * self.rng.gauss(0.0, 1.0) - sigma * sigma / 2)
        tick_size = sub.tick_size or 0.01
        # The floor leaves room for the widest spread, so the bid stays a positive price.
        price = max(round((MAX_SPREAD_TICKS + 1) * tick_size, 6), round(round(raw / tick_size) * tick_size, 6))
        size = max(1, int(self.rng.expovariate(1 / 120)))
        walk.price = price
        walk.high = max(walk.high, price)
        walk.low = min(walk.low, price)
        walk.day_volume += size
        spread = tick_size * self.rng.randint(1, MAX_SPREAD_TICKS)
        return Tick(
            instrument_id=sub.instrument_id,
            provider=self.code,
            ts=now_ms,
            price=price,
            size=size,
            day_volume=walk.day_volume,
            day_open=walk.open,
            day_high=walk.high,
            day_low=walk.low,
            prev_close=walk.prev_close,
            bid=round(price - spread, 6),
            ask=round(price + spread, 6),
        )

    async def _run(self) -> None:
        self.set_status(FeedStatus.STREAMING)
        probability = min(1.0, self.rate * self.interval)
        last: dict[int, float] = {}
        while True:
            now = time.time()
            now_ms = int(now * 1000)
            woke = time.monotonic()
            for sub in list(self.subscriptions.values()):
                if self.rng.random() >= probability or not await self._exchange_open(sub.exchange):
                    continue
                dt = now - last.get(sub.instrument_id, now - 1 / max(self.rate, 0.001))
                last[sub.instrument_id] = now
                await self.emit(self.step(sub, max(dt, 0.001), now_ms))
            # The time spent emitting counts against the interval, or the rate would drift down.
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - woke)))
