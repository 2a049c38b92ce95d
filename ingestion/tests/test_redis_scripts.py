"""The Redis tick store's and the publisher's script paths write and read what the plain commands did."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from django.conf import settings

from ingestion.ticks import Tick
from marketdata.live.protocol import ChannelLayerPublisher, bar_group, quote_group
from marketdata.live.store import StoreBatch
from marketdata.live.store.base import BAR_RETENTION_MS, TICK_RETENTION_MS
from marketdata.live.store.redis import CUMULATIVE, OPEN_BARS, PERSIST, QUOTES, bars_key, tick_key
from marketdata.live.types import Bar, Quote

T0 = 1_705_290_300_000  # 2024-01-15 03:45 UTC


def bar(iid: int, ts: int, close: float = 100.5) -> Bar:
    return Bar(iid, ts, 100.0, 101.0, 99.5, close, 10, 2, "1m", "SIM")


async def test_one_script_call_writes_every_key_as_the_commands_did(redis_store):
    r = redis_store.redis
    stale = bar(1, T0 - BAR_RETENTION_MS - 120_000)  # older than the window of the bar closed below
    await r.zadd(bars_key(1), {orjson.dumps(stale.as_dict()): stale.ts})
    await r.hset(OPEN_BARS, mapping={1: b"{}", 2: b"{}"})
    ticks = [
        Tick(1, "SIM", T0, 100.05, 5, 1000),
        Tick(1, "SIM", T0 + 1, 0.1 + 0.2, None, None),
        Tick(2, "SIM", T0 + 2, 2500.0, 7, None),
    ]
    quote = Quote(1, T0 + 1, 0.1 + 0.2, 100.0, 101.0, 99.0, 1000, 99.5, seq=3, provider="SIM")
    closed = bar(1, T0 - 60_000)
    await redis_store.write(
        StoreBatch(
            ticks=ticks,
            quotes=[quote],
            open_bars=[bar(2, T0)],
            closed_bars=[closed],
            cumulative={1: 1000},
        )
    )
    entries = await r.xrange(tick_key(1))
    assert [e[1] for e in entries] == [
        {b"ts": str(T0).encode(), b"p": b"100.05", b"s": b"5", b"v": b"1000"},
        {b"ts": str(T0 + 1).encode(), b"p": repr(0.1 + 0.2).encode()},
    ]
    assert [e[1] for e in await r.xrange(tick_key(2))] == [{b"ts": str(T0 + 2).encode(), b"p": b"2500.0", b"s": b"7"}]
    assert Quote.from_dict(orjson.loads(await r.hget(QUOTES, 1))) == quote
    assert await r.hget(CUMULATIVE, 1) == b"1000"
    # Instrument 1's bar closed and no new one opened in the batch: its open bar is gone.
    assert await r.hkeys(OPEN_BARS) == [b"2"]
    assert Bar.from_dict(orjson.loads(await r.hget(OPEN_BARS, 2))) == bar(2, T0)
    # The closed bar is in the recent-bars set (older than the retention trimmed) and the persist stream.
    assert [Bar.from_dict(orjson.loads(m)) for m in await r.zrange(bars_key(1), 0, -1)] == [closed]
    ((_, fields),) = await r.xrange(PERSIST)
    assert Bar.from_dict(orjson.loads(fields[b"bar"])) == closed


async def test_tick_streams_are_trimmed_by_age(redis_store):
    # Entry ids come from Redis' clock: entries from two hours ago, then a tick of now.
    now = int(time.time() * 1000)
    old_ms = now - 2 * TICK_RETENTION_MS
    for i in range(250):
        await redis_store.redis.xadd(tick_key(1), {"ts": old_ms + i, "p": 1.0}, id=f"{old_ms + i}-0")
    await redis_store.write(StoreBatch(ticks=[Tick(1, "SIM", now, 2.0)]))
    entries = await redis_store.redis.xrange(tick_key(1))
    # Approximate trimming drops whole stream nodes (100 entries by default), never the new tick.
    assert len(entries) <= 51
    assert entries[-1][1] == {b"ts": str(now).encode(), b"p": b"2.0"}


async def test_read_claim_and_ack_through_the_scripts(redis_store):
    bars = [bar(i % 3 + 1, T0 + i * 60_000, close=100 + i) for i in range(7)]
    await redis_store.write(StoreBatch(closed_bars=bars))
    first = await redis_store.persist_read("a", 4)
    assert [e.bar for e in first] == bars[:4]
    rest = await redis_store.persist_read("a", 100)
    assert [e.bar for e in rest] == bars[4:]
    assert await redis_store.persist_read("a", 100) == []
    # Consumer "a" died: "b" takes its unacknowledged entries over.
    taken = await redis_store.persist_claim_stale("b", 0, 100)
    assert [e.entry_id for e in taken] == [e.entry_id for e in first + rest]
    await redis_store.persist_ack([e.entry_id for e in taken[:5]])
    assert (await redis_store.persist_lag())["pending"] == 2
    await redis_store.persist_ack([e.entry_id for e in taken[5:]])
    assert (await redis_store.persist_lag())["pending"] == 0
    assert await redis_store.persist_claim_stale("b", 0, 100) == []


async def test_a_lost_stream_and_group_are_recreated(redis_store):
    await redis_store.persist_read("a", 1)
    await redis_store.redis.delete(PERSIST)  # as after a Redis restart without persistence
    await redis_store.write(StoreBatch(closed_bars=[bar(1, T0)]))
    assert [e.bar for e in await redis_store.persist_read("a", 10)] == [bar(1, T0)]


@pytest.mark.parametrize("count", [1, 2500])
async def test_a_batch_reaches_every_group_in_order(count):
    """Thousands of messages go out in script calls of bounded size, each to its own group."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[settings.REDIS_URL or "redis://127.0.0.1:6379/15"], prefix="scripts")
    publisher = ChannelLayerPublisher(layer)
    assert publisher._pipelined
    quotes, bars_ = await layer.new_channel(), await layer.new_channel()
    await layer.group_add(quote_group(7), quotes)
    await layer.group_add(bar_group(7), bars_)
    try:
        messages = []
        for i in range(count):
            messages += [(quote_group(7), f'{{"q":{i}}}'), (bar_group(7), f'{{"b":{i}}}'), (quote_group(8), "x")]
        await publisher.publish(messages)
        got_q = [await asyncio.wait_for(layer.receive(quotes), 5) for _ in range(count)]
        got_b = [await asyncio.wait_for(layer.receive(bars_), 5) for _ in range(count)]
        assert [orjson.loads(m["text"])["q"] for m in got_q] == list(range(count))
        assert [orjson.loads(m["text"])["b"] for m in got_b] == list(range(count))
        assert got_q[0] == {"type": "market.message", "group": quote_group(7), "text": '{"q":0}'}
    finally:
        await layer.group_discard(quote_group(7), quotes)
        await layer.group_discard(bar_group(7), bars_)
        await layer.flush()
