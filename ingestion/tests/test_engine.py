"""The engine over both tick stores: volume deltas, bars, quotes, restarts, publishing."""

from __future__ import annotations

import random

import orjson
import pandas as pd
import pytest

from ingestion.engine import Engine, InstrumentMeta
from ingestion.ticks import Tick
from marketdata.live.protocol import ChannelLayerPublisher, bar_group, quote_group
from marketdata.live.types import MINUTE_MS

T0 = 1_705_312_800_000  # 2024-01-15T10:00:00Z, a minute boundary


def meta(iid=1, symbol="AAPL", exchange="NASDAQ", tz="America/New_York"):
    return InstrumentMeta(iid, symbol, exchange, tz)


async def make_engine(store, publisher=None, *metas):
    engine = Engine(store=store, publisher=publisher)
    engine.set_instruments(metas or [meta()])
    await engine.restore()
    return engine


def tick(ts, price, day_volume=None, size=None, iid=1, provider="SIM", **kw):
    return Tick(instrument_id=iid, provider=provider, ts=ts, price=price, day_volume=day_volume, size=size, **kw)


async def test_volume_is_the_delta_of_cumulative_day_volume(tick_store):
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1000, 100.0, 5000), tick(T0 + 2000, 101.0, 5300), tick(T0 + 3000, 100.5, 5450)])
    bar = engine.aggregator.open_bars[1]
    # The first sighting's 5000 happened before we were listening; then +300 and +150.
    assert bar.volume == 450
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 101.0, 100.0, 100.5)
    assert engine.quotes[1].volume == 5450


async def test_volume_survives_an_engine_restart_without_zeroing_or_doubling(tick_store):
    first = await make_engine(tick_store)
    await first.process([tick(T0 + 1000, 100.0, 5000), tick(T0 + 2000, 100.0, 5200)])
    second = await make_engine(tick_store)  # a new process: state comes from the store
    await second.process([tick(T0 + 3000, 100.0, 5260)])
    assert second.aggregator.open_bars[1].volume == 200 + 60
    assert second.quotes[1].seq == first.quotes[1].seq + 1


async def test_duplicate_and_late_ticks_are_dropped(tick_store):
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1000, 100.0, size=10), tick(T0 + 1000, 100.0, size=10)])
    assert engine.volumes.duplicates == 1
    await engine.process([tick(T0 + MINUTE_MS + 5, 101.0, size=1)])
    await engine.process([tick(T0 + 500, 99.0, size=7)])  # belongs to the closed minute
    assert engine.aggregator.late == 1
    assert engine.aggregator.open_bars[1].low == 101.0


async def test_bars_close_on_the_minute_even_when_quiet(tick_store):
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1000, 100.0, size=3)])
    assert await engine.close_bars(now_ms=T0 + 59_000) == []
    closed = await engine.close_bars(now_ms=T0 + MINUTE_MS)
    assert [(b.ts, b.volume) for b in closed] == [(T0, 3)]
    lag = await tick_store.persist_lag()
    assert lag == {"pending": 1, "oldest_ms": T0}


async def test_a_new_session_resets_the_day_and_takes_the_lower_cumulative_volume(tick_store):
    engine = await make_engine(tick_store, None, meta(tz="Asia/Kolkata"))
    day1 = 1_705_290_300_000  # 2024-01-15 09:15 IST
    await engine.process([tick(day1, 100.0, 9_000), tick(day1 + 1000, 110.0, 9_500)])
    day2 = day1 + 86_400_000
    await engine.process([tick(day2, 105.0, 200)])
    q = engine.quotes[1]
    assert (q.open, q.high, q.low, q.volume) == (105.0, 105.0, 105.0, 200)
    assert q.previous_close == 110.0
    assert engine.aggregator.open_bars[1].volume == 200


def _random_ticks(n=4000, instruments=(1, 2, 3), seed=7):
    rng = random.Random(seed)
    cum = dict.fromkeys(instruments, 0)
    price = dict.fromkeys(instruments, 100.0)
    ts = T0
    out = []
    for _ in range(n):
        ts += rng.randint(5, 400)
        iid = rng.choice(instruments)
        price[iid] = round(price[iid] * (1 + rng.gauss(0, 0.001)), 2)
        cum[iid] += rng.randint(1, 50)
        out.append(tick(ts, price[iid], cum[iid], iid=iid))
    return out


async def test_bars_equal_an_independent_pandas_resample(tick_store):
    ticks = _random_ticks()
    engine = await make_engine(tick_store, None, meta(1, "A"), meta(2, "B"), meta(3, "C"))
    for i in range(0, len(ticks), 97):  # uneven batches, as feeds deliver them
        await engine.process(ticks[i : i + 97])
    await engine.close_bars(now_ms=ticks[-1].ts + 2 * MINUTE_MS)
    entries = await tick_store.persist_read("t", 100_000)
    ours = {(e.bar.instrument_id, e.bar.ts): e.bar for e in entries}

    df = pd.DataFrame([(t.instrument_id, t.ts, t.price, t.day_volume) for t in ticks], columns="iid ts p cum".split())
    df["vol"] = df.groupby("iid")["cum"].diff().fillna(0).astype(int)
    df["t"] = pd.to_datetime(df["ts"], unit="ms")
    expected = {}
    for iid, g in df.groupby("iid"):
        r = g.set_index("t").resample("1min").agg({"p": ["first", "max", "min", "last"], "vol": "sum"}).dropna()
        for t, row in r.iterrows():
            expected[(iid, int(t.value // 1_000_000))] = tuple(row)
    assert set(ours) == set(expected)
    for key, (o, h, low, c, v) in expected.items():
        b = ours[key]
        assert (b.open, b.high, b.low, b.close, b.volume) == (o, h, low, c, v), key


async def test_ticks_from_a_provider_not_serving_the_instrument_are_ignored(tick_store):
    engine = await make_engine(tick_store)
    engine.assigned[1] = "DHAN"
    await engine.process([tick(T0, 100.0, size=1, provider="YF"), tick(T0 + 1, 101.0, size=1, provider="DHAN")])
    assert engine.stats.ticks_other_provider == 1
    assert engine.quotes[1].last == 101.0


async def test_with_strict_routing_unassigned_instruments_are_dropped(tick_store):
    engine = await make_engine(tick_store)
    engine.strict_routing = True  # a manager owns routing and has unassigned instrument 1
    await engine.process([tick(T0, 100.0, size=1, provider="YF")])
    assert engine.stats.ticks_other_provider == 1 and 1 not in engine.quotes


async def test_one_message_per_changed_instrument_per_batch(tick_store, recorder):
    engine = await make_engine(tick_store, recorder, meta(1, "AAPL"), meta(2, "M&M", "NSE", "Asia/Kolkata"))
    await engine.process([tick(T0, 100.0, size=1), tick(T0 + 5, 100.5, size=1), tick(T0 + 9, 50.0, size=2, iid=2)])
    groups = [g for g, _ in recorder.messages]
    assert groups.count(quote_group(1)) == 1 and groups.count(quote_group(2)) == 1
    assert groups.count(bar_group(1)) == 1
    data = orjson.loads(dict(recorder.messages)[quote_group(2)])
    assert data["message_type"] == "data" and data["symbol"] == "M&M" and data["exchange"] == "NSE"
    assert data["close"] == 50.0 and data["seq"] == 1 and data["timestamp"].endswith("Z")


async def test_recent_bars_merge_closed_and_open(tick_store):
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1, 100.0, size=1), tick(T0 + MINUTE_MS + 1, 101.0, size=2)])
    bars = await tick_store.recent_bars(1, T0, T0 + 10 * MINUTE_MS)
    assert [(b.ts, b.close, b.volume) for b in bars] == [(T0, 100.0, 1), (T0 + MINUTE_MS, 101.0, 2)]
    ticks = await tick_store.recent_ticks(1, 0)
    assert [t.price for t in ticks] == [100.0, 101.0]


async def test_persist_stream_ack_and_takeover(tick_store):
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1, 100.0, size=1), tick(T0 + MINUTE_MS + 1, 101.0, size=2)])
    await engine.close_bars(now_ms=T0 + 3 * MINUTE_MS)
    got = await tick_store.persist_read("dead", 10)
    assert len(got) == 2
    assert await tick_store.persist_read("other", 10) == []
    taken = await tick_store.persist_claim_stale("alive", 0, 10)
    assert sorted(e.bar.ts for e in taken) == [T0, T0 + MINUTE_MS]
    await tick_store.persist_ack([e.entry_id for e in taken])
    assert (await tick_store.persist_lag())["pending"] == 0


async def test_publishing_through_the_real_redis_channel_layer(settings):
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[settings.REDIS_URL or "redis://127.0.0.1:6379/15"])
    channel = await layer.new_channel()
    await layer.group_add(quote_group(42), channel)
    try:
        from marketdata.live.store.memory import MemoryTickStore

        engine = await make_engine(MemoryTickStore(), ChannelLayerPublisher(layer), meta(42, "^NSEI", "NSE"))
        await engine.process([tick(T0, 21_000.5, size=1, iid=42)])
        message = await layer.receive(channel)
        assert message["type"] == "market.message"
        assert orjson.loads(message["text"])["symbol"] == "^NSEI"
    finally:
        await layer.group_discard(quote_group(42), channel)
        await layer.flush()


@pytest.mark.parametrize("n", [1, 3])
async def test_store_write_is_retried_when_redis_is_unreachable(n, recorder):
    """A store that fails n times then works: nothing is lost or applied twice."""
    from marketdata.live.store.memory import MemoryTickStore

    class Flaky(MemoryTickStore):
        def __init__(self):
            super().__init__()
            self.failures = n

        async def write(self, batch):
            if self.failures:
                self.failures -= 1
                raise ConnectionError("redis down")
            await super().write(batch)

    store = Flaky()
    engine = await make_engine(store, recorder)
    await engine.process([tick(T0, 100.0, 1000), tick(T0 + 1, 100.0, 1100)])
    assert engine.stats.store_errors == n
    assert store.quotes[1].volume == 1100 and store.open_bars[1].volume == 100


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 0.0, -1.5])
async def test_a_non_finite_or_non_positive_price_never_reaches_a_bar_or_quote(tick_store, bad):
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1000, 100.0, 5000), tick(T0 + 2000, bad, 5100), tick(T0 + 3000, 100.5, 5200)])
    bar = engine.aggregator.open_bars[1]
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 100.5, 100.0, 100.5)
    assert engine.quotes[1].last == 100.5 and engine.stats.ticks_bad_price == 1


async def test_a_32_bit_cumulative_volume_that_wraps_keeps_counting(tick_store):
    """Dhan's day volume is an unsigned 32-bit field: past 2^32 it starts again from zero."""
    engine = await make_engine(tick_store)
    near = 2**32 - 1_000
    await engine.process([tick(T0 + 1000, 100.0, near), tick(T0 + 2000, 100.1, near + 400)])
    await engine.process([tick(T0 + 3000, 100.2, 250)])  # wrapped: +600 to 2^32, then +250
    await engine.process([tick(T0 + 4000, 100.3, 450)])
    assert engine.aggregator.open_bars[1].volume == 400 + 600 + 250 + 200


async def test_the_first_trade_of_the_day_counts_when_the_engine_starts_with_the_session(tick_store):
    """The first tick's cumulative equals its trade size: that trade belongs to the first bar."""
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1000, 100.0, 50, size=50), tick(T0 + 2000, 100.5, 80, size=30)])
    closed = await engine.close_bars(now_ms=T0 + MINUTE_MS)
    assert [(b.ts, b.volume) for b in closed] == [(T0, 80)]


async def test_a_first_sighting_mid_session_still_counts_only_from_there(tick_store):
    engine = await make_engine(tick_store)
    await engine.process([tick(T0 + 1000, 100.0, 5000, size=20), tick(T0 + 2000, 100.5, 5030, size=30)])
    assert engine.aggregator.open_bars[1].volume == 30


async def test_a_new_day_counts_its_whole_cumulative_even_above_yesterdays_total(tick_store):
    """Stored cumulative from yesterday: today's first value is today's, whatever its size."""
    first = await make_engine(tick_store, None, meta(tz="Asia/Kolkata"))
    day1 = 1_705_290_300_000  # 2024-01-15 09:15 IST
    await first.process([tick(day1, 100.0, 9_000), tick(day1 + 1000, 110.0, 9_500)])
    restarted = await make_engine(tick_store, None, meta(tz="Asia/Kolkata"))
    day2 = day1 + 86_400_000
    await restarted.process([tick(day2, 105.0, 12_000), tick(day2 + 1000, 106.0, 12_100)])
    assert restarted.aggregator.open_bars[1].volume == 12_100
    assert restarted.quotes[1].volume == 12_100


async def test_a_new_day_after_a_counter_near_2_32_is_a_new_day_not_a_wrap(tick_store):
    engine = await make_engine(tick_store, None, meta(tz="Asia/Kolkata"))
    day1 = 1_705_290_300_000
    await engine.process([tick(day1, 100.0, 2**32 - 500)])
    await engine.process([tick(day1 + 86_400_000, 101.0, 700)])
    assert engine.aggregator.open_bars[1].volume == 700


def test_the_tick_rate_keeps_one_entry_per_second_however_many_batches():
    from ingestion.engine import RATE_WINDOW_S, EngineStats

    stats = EngineStats()
    for i in range(50_000):  # 50,000 batches of 2 ticks over 100 s
        stats.count(2, now=1000.0 + i / 500)
    assert len(stats.recent) <= RATE_WINDOW_S + 1
    assert stats.ticks_per_second(60.0, now=1100.0) == pytest.approx(1000.0, rel=0.02)
    assert stats.ticks_per_second(60.0, now=1300.0) == 0.0  # nothing in the last minute
