"""A few past sessions of synthetic history for the demo instruments, so a first start shows charts.

``seed_demo`` writes, for each demo instrument, one-minute bars over the regular session of
its exchange's last ``sessions`` closed trading dates (a seeded random walk from the
instrument's reference price, so every run writes the same bars), then rolls each date up into
daily bars exactly as the live path does (``ingestion.rollup``). Bars already stored are kept:
running it again writes nothing new. The bars carry the simulator as their source.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction

from exchanges.selectors import exchange_sessions, exchange_trading_date
from instruments import reference_data
from instruments.models import Instrument
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

from .models import Provider
from .rollup import ROLLUP_GRACE, rollup_day, session_window

# Annualised volatility of the walk and the trading minutes it is scaled over.
VOLATILITY = 0.3
MINUTES_PER_YEAR = 252 * 375
BATCH = 5000


@dataclass
class DemoHistoryResult:
    intraday: int = 0  # one-minute bars written
    daily: int = 0  # daily bars written by the rollup
    sessions: int = 0  # (exchange, date) pairs covered


def _closed_sessions(exchange, count: int, now: datetime):
    """The last ``count`` sessions of ``exchange`` closed before ``now`` (and past the rollup's grace,
    so the live rollup agrees about which sessions are complete)."""
    today = exchange_trading_date(exchange=exchange, at=now)
    sessions = exchange_sessions(exchange=exchange, start=today - timedelta(days=count * 2 + 10), end=today)
    closed = [s for s in sessions if session_window(exchange=exchange, session=s).end + ROLLUP_GRACE <= now]
    return closed[-count:]


def _walk_bars(instrument: Instrument, start_price: float, window, rng: random.Random, source_id: int | None):
    """One-minute bars over ``window``; returns them and the last close."""
    tick = float(instrument.tick_size or 0.01)
    sigma = VOLATILITY / math.sqrt(MINUTES_PER_YEAR)
    price = start_price
    bars = []
    at = window.start
    while at < window.end:
        prices = [price]
        for _ in range(4):  # four steps inside the minute give it a high and a low
            price *= math.exp(sigma / 2 * rng.gauss(0.0, 1.0))
            prices.append(price)
        rounded = [max(tick, round(round(p / tick) * tick, 6)) for p in prices]
        bars.append(
            PriceHistoryIntraday(
                instrument=instrument,
                timestamp=at,
                interval="1m",
                open=rounded[0],
                high=max(rounded),
                low=min(rounded),
                close=rounded[-1],
                volume=int(rng.expovariate(1 / 2500)) + 1,
                trade_count=rng.randint(5, 60),
                source_id=source_id,
            )
        )
        at += timedelta(minutes=1)
    return bars, price


def demo_history_seed(*, sessions: int, now: datetime | None = None) -> DemoHistoryResult:
    """Write ``sessions`` past sessions of bars for every demo instrument (0 writes nothing)."""
    result = DemoHistoryResult()
    if sessions <= 0:
        return result
    now = now or datetime.now(UTC)
    source_id = Provider.objects.filter(code="SIM").values_list("pk", flat=True).first()
    wanted = {(spec["exchange"], spec["symbol"]) for spec in reference_data.DEMO_INSTRUMENTS}
    instruments = [
        i
        for i in Instrument.objects.select_related("exchange").filter(exchange__code__in={e for e, _ in wanted})
        if (i.exchange.code, i.symbol) in wanted
    ]
    by_exchange: dict = {}
    for instrument in instruments:
        by_exchange.setdefault(instrument.exchange, []).append(instrument)
    intraday_before = PriceHistoryIntraday.objects.filter(instrument__in=instruments).count()
    daily_before = PriceHistoryDaily.objects.filter(instrument__in=instruments).count()
    for exchange, members in sorted(by_exchange.items(), key=lambda item: item[0].code):
        past = _closed_sessions(exchange, sessions, now)
        for instrument in members:
            # Seeded per instrument: every run (and every machine) writes the same walk.
            rng = random.Random(zlib.crc32(f"{exchange.code}:{instrument.symbol}".encode()))  # noqa: S311
            price = float(reference_data.DEMO_PRICES[(exchange.code, instrument.symbol)])
            pending: list[PriceHistoryIntraday] = []
            for session in past:
                bars, price = _walk_bars(
                    instrument, price, session_window(exchange=exchange, session=session), rng, source_id
                )
                pending.extend(bars)
            with transaction.atomic():
                for i in range(0, len(pending), BATCH):
                    PriceHistoryIntraday.objects.bulk_create(pending[i : i + BATCH], ignore_conflicts=True)
        for session in past:
            rollup_day(exchange=exchange, date=session.date)
            result.sessions += 1
    result.intraday = PriceHistoryIntraday.objects.filter(instrument__in=instruments).count() - intraday_before
    result.daily = PriceHistoryDaily.objects.filter(instrument__in=instruments).count() - daily_before
    return result
