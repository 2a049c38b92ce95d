"""The ingestion engine: ticks in; quotes, bars, store writes and live updates out.

One engine per process. Feed clients hand it batches of ticks; each batch becomes one
tick-store write (one Redis round trip) and one publish per changed instrument, made in the
background while the next batch is applied (one step in flight, in order). A timer closes
1-minute bars on the minute boundary even when an instrument goes quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from ingestion.bars import BarAggregator
from ingestion.latency import LatencyHistogram
from ingestion.normalize import VolumeNormalizer
from ingestion.ticks import Tick
from marketdata.live.protocol import bar_group, bar_payload, encode, quote_group, quote_payload
from marketdata.live.store import StoreBatch, TickStore
from marketdata.live.types import Bar, Quote

logger = logging.getLogger(__name__)


@dataclass
class InstrumentMeta:
    """What the engine needs to know about an instrument to label and bound its data."""

    instrument_id: int
    symbol: str
    exchange: str
    timezone: str = "UTC"
    _zone: ZoneInfo | None = field(default=None, repr=False)
    _day: tuple[int, int] = field(default=(0, 0), repr=False)

    def session_day(self, ts_ms: int) -> tuple[int, int]:
        """``[start, end)`` in UTC ms of the exchange-local calendar day containing ``ts_ms``."""
        start, end = self._day
        if start <= ts_ms < end:
            return self._day
        zone = self._zone = self._zone or ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(ts_ms / 1000, zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        following = (midnight + timedelta(days=1)).replace(tzinfo=zone)
        self._day = (int(midnight.timestamp() * 1000), int(following.timestamp() * 1000))
        return self._day


RATE_WINDOW_S = 120  # seconds of tick counts kept for ``ticks_per_second``


@dataclass
class EngineStats:
    """Counters for status pages and benchmarks."""

    ticks_in: int = 0
    ticks_unknown: int = 0
    ticks_other_provider: int = 0
    ticks_bad_price: int = 0  # NaN, infinite, zero or negative: never reaches a bar or a quote
    bars_closed: int = 0
    batches: int = 0
    store_errors: int = 0
    last_tick_ms: int | None = None
    # [whole monotonic second, ticks] per second with ticks, oldest first: a few dozen entries
    # however many batches a second brings (a list of every batch made the rate O(batches)).
    recent: deque[list[int]] = field(default_factory=deque)
    batch_seconds: LatencyHistogram = field(default_factory=LatencyHistogram)  # a batch: applied to published
    publish_seconds: LatencyHistogram = field(default_factory=LatencyHistogram)  # the channel-layer publish

    def count(self, ticks: int, now: float | None = None) -> None:
        """Count a batch of ``ticks`` for the rate (at ``now``, monotonic seconds)."""
        second = int(time.monotonic() if now is None else now)
        recent = self.recent
        if recent and recent[-1][0] == second:
            recent[-1][1] += ticks
        else:
            recent.append([second, ticks])
            while recent[0][0] < second - RATE_WINDOW_S:
                recent.popleft()

    def ticks_per_second(self, window_s: float = 60.0, now: float | None = None) -> float:
        """Ticks per second over the last ``window_s`` seconds (whole seconds; at most RATE_WINDOW_S)."""
        since = (time.monotonic() if now is None else now) - window_s
        return sum(n for second, n in self.recent if second >= since) / window_s


class Engine:
    """Normalizes ticks, keeps quotes and 1m bars, writes the tick store and publishes."""

    def __init__(
        self,
        *,
        store: TickStore,
        publisher=None,
        store_ticks: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.store_ticks = store_ticks
        self.clock = clock
        self.meta: dict[int, InstrumentMeta] = {}
        # instrument id -> provider code serving it; ticks from others are dropped. Once a
        # manager owns routing (``strict_routing``), ticks of unassigned instruments are too.
        self.assigned: dict[int, str] = {}
        self.strict_routing = False
        self.quotes: dict[int, Quote] = {}
        self.aggregator = BarAggregator()
        self.volumes = VolumeNormalizer()
        self.stats = EngineStats()
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task | None = None
        self._inflight: asyncio.Task | None = None  # the last step handed off to be written

    # --- set-up -------------------------------------------------------------------------
    def set_instruments(self, metas: Iterable[InstrumentMeta]) -> None:
        """Declare the instruments the engine may receive (labels and time zones)."""
        for m in metas:
            self.meta[m.instrument_id] = m

    async def restore(self) -> None:
        """Take back quotes, open bars and cumulative volumes left by the previous run."""
        state = await self.store.load_state()
        self.quotes.update(state.quotes)
        self.aggregator.restore(list(state.open_bars.values()))
        self.volumes.cumulative.update(state.cumulative)

    async def start(self) -> None:
        """Restore state and start the bar-closing timer."""
        await self.restore()
        if self._timer is None:
            self._timer = asyncio.create_task(self._close_bars_forever(), name="engine-bar-timer")

    async def stop(self) -> None:
        """Stop the timer and flush the bars whose minute has ended."""
        if self._timer:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self.close_bars()

    # --- the hot path -------------------------------------------------------------------
    async def process(self, ticks: list[Tick]) -> None:
        """Apply one batch of ticks and return once it is written and published."""
        await self.submit(ticks)
        await self.drain()

    async def submit(self, ticks: list[Tick]) -> None:
        """Apply one batch of ticks: one store write, one publish per changed instrument.

        The batch is applied and encoded here; its write and publish run in the background,
        in order after the previous batch's, while the caller takes and applies the next one
        (Python's work overlaps Redis'). One step is in flight at most: this returns once the
        previous step is written, and raises that step's error if it failed.
        """
        async with self._lock:
            began = time.perf_counter()
            batch = StoreBatch()
            changed: dict[int, Quote] = {}
            touched_bars: dict[int, Bar] = {}
            closed: list[Bar] = []
            meta = self.meta
            assigned = self.assigned
            for tick in ticks:
                iid = tick.instrument_id
                m = meta.get(iid)
                if m is None:
                    self.stats.ticks_unknown += 1
                    continue
                price = tick.price
                if not (isinstance(price, float | int) and math.isfinite(price) and price > 0):
                    self.stats.ticks_bad_price += 1
                    continue
                owner = assigned.get(iid)
                if (owner is not None and owner != tick.provider) or (owner is None and self.strict_routing):
                    self.stats.ticks_other_provider += 1
                    continue
                quote = self.quotes.get(iid)
                day_start, day_end = m.session_day(tick.ts)
                new_session = quote is not None and not (day_start <= quote.ts < day_end) and tick.ts >= quote.ts
                volume = self.volumes.volume_of(tick, new_session=new_session)
                if volume is None:
                    continue
                finished = self.aggregator.add(iid, tick.ts, tick.price, volume, tick.provider)
                if finished is not None:
                    closed.append(finished)
                bar = self.aggregator.open_bars.get(iid)
                if bar is not None:
                    touched_bars[iid] = bar
                quote = self._update_quote(quote, tick, volume, new_session)
                self.quotes[iid] = quote
                changed[iid] = quote
                if self.store_ticks:
                    batch.ticks.append(tick)
                if tick.day_volume is not None:
                    batch.cumulative[iid] = self.volumes.cumulative[iid]
                self.stats.ticks_in += 1
                self.stats.last_tick_ms = tick.ts
            for quote in changed.values():
                quote.seq += 1
            batch.quotes = list(changed.values())
            batch.open_bars = list(touched_bars.values())
            batch.closed_bars = closed
            self.stats.bars_closed += len(closed)
            self.stats.batches += 1
            self.stats.count(len(ticks))
            messages = self._messages(changed.values(), touched_bars.values(), closed)
            await self._hand_off(self.store.prepare(batch), messages, began)

    @staticmethod
    def _update_quote(quote: Quote | None, tick: Tick, volume: int, new_session: bool) -> Quote:
        price = tick.price
        if quote is None or new_session:
            quote = Quote(
                instrument_id=tick.instrument_id,
                ts=tick.ts,
                last=price,
                open=tick.day_open or price,
                high=tick.day_high or price,
                low=tick.day_low or price,
                volume=tick.day_volume if tick.day_volume is not None else volume,
                previous_close=tick.prev_close or (quote.last if quote is not None else None),
                bid=tick.bid,
                ask=tick.ask,
                seq=quote.seq if quote is not None else 0,
                provider=tick.provider,
            )
            return quote
        if tick.ts >= quote.ts:
            quote.ts = tick.ts
            quote.last = price
        quote.open = tick.day_open or quote.open
        quote.high = max(quote.high, tick.day_high or price, price)
        quote.low = min(quote.low, tick.day_low or price, price)
        quote.volume = tick.day_volume if tick.day_volume is not None else quote.volume + volume
        if tick.prev_close:
            quote.previous_close = tick.prev_close
        if tick.bid is not None:
            quote.bid = tick.bid
        if tick.ask is not None:
            quote.ask = tick.ask
        quote.provider = tick.provider
        return quote

    def _messages(self, quotes: Iterable[Quote], open_bars: Iterable[Bar], closed: list[Bar]) -> list[tuple[str, str]]:
        """The step's live updates, encoded now: (group, message) pairs."""
        if self.publisher is None:
            return []
        messages: list[tuple[str, str]] = []
        for q in quotes:
            m = self.meta[q.instrument_id]
            messages.append((quote_group(q.instrument_id), encode(quote_payload(q, m.symbol, m.exchange))))
        for bar in closed:
            m = self.meta[bar.instrument_id]
            messages.append((bar_group(bar.instrument_id), encode(bar_payload(bar, m.symbol, m.exchange, closed=True))))
        for bar in open_bars:
            m = self.meta[bar.instrument_id]
            messages.append(
                (bar_group(bar.instrument_id), encode(bar_payload(bar, m.symbol, m.exchange, closed=False)))
            )
        return messages

    # --- writing and publishing, one step in flight ---------------------------------------
    async def _hand_off(self, prepared: object, messages: list[tuple[str, str]], began: float) -> None:
        """Start this step's write and publish behind the previous step's; wait for that one.

        Called under the lock, so steps are handed off in the order they were applied. The
        step's task exists before anything is awaited: a cancelled caller never loses it.
        """
        previous = self._inflight
        self._inflight = asyncio.create_task(self._commit(previous, prepared, messages, began))
        if previous is not None:
            await asyncio.shield(previous)

    async def _commit(
        self, previous: asyncio.Task | None, prepared: object, messages: list[tuple[str, str]], began: float
    ) -> None:
        if previous is not None:
            # In order: never before the previous step. Its error goes to whoever waits on it;
            # this step, already applied in memory, is still written.
            with contextlib.suppress(Exception):
                await previous
        await self._write(prepared)
        if messages and self.publisher is not None:
            published = time.perf_counter()
            await self.publisher.publish(messages)
            self.stats.publish_seconds.observe(time.perf_counter() - published)
        self.stats.batch_seconds.observe(time.perf_counter() - began)

    async def drain(self) -> None:
        """Wait until every step handed off is written and published (raise the last one's error)."""
        last = self._inflight
        if last is not None:
            try:
                await asyncio.shield(last)
            finally:
                if self._inflight is last and last.done():
                    self._inflight = None  # its error, if any, is raised here once

    # --- the minute boundary ------------------------------------------------------------
    async def close_bars(self, now_ms: int | None = None) -> list[Bar]:
        """Close the bars whose minute ended (quiet instruments included) and hand them on."""
        async with self._lock:
            now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
            closed = self.aggregator.close_due(now_ms)
            if closed:
                self.stats.bars_closed += len(closed)
                prepared = self.store.prepare(StoreBatch(closed_bars=closed))
                await self._hand_off(prepared, self._messages((), (), closed), time.perf_counter())
        await self.drain()
        return closed

    async def _close_bars_forever(self) -> None:
        while True:
            now = self.clock()
            # Wake just after the next minute boundary (and at least once a second).
            await asyncio.sleep(min(1.0, 60 - now % 60 + 0.05))
            try:
                await self.close_bars()
            except Exception:
                logger.exception("closing bars failed; retrying on the next tick of the timer")

    async def _write(self, prepared: object) -> None:
        """Write a prepared step, retrying until the store takes it.

        The in-memory state already includes the step, so giving up would lose it; waiting
        holds up the next step (one in flight at most), the feed queues fill and the
        providers' sockets apply back-pressure.
        """
        delay = 0.2
        while True:
            try:
                await self.store.write_prepared(prepared)
                return
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                self.stats.store_errors += 1
                logger.warning("tick store unavailable (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # --- feeding from clients -----------------------------------------------------------
    async def consume(self, client, batch_size: int = 2000) -> None:
        """Process a feed client's ticks until cancelled (a batch taken is always finished).

        The next batch is taken and applied while the previous one is being written.
        """
        while True:
            batch = await client.next_batch(batch_size)
            await asyncio.shield(self.submit(batch))


def _is_transient(exc: Exception) -> bool:
    """Connection trouble (Redis down or restarting), as opposed to a bug."""
    return isinstance(exc, (OSError, TimeoutError, RedisConnectionError, RedisTimeout, BusyLoadingError))
