"""The engine applies the next batch while the previous one is written (one step in flight).

Redis' own ``CLIENT PAUSE ... WRITE`` holds a write in the server, so the overlap, the order
of the steps, the snapshot each step writes and the errors are observed on the real store.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
from redis.exceptions import ResponseError

from marketdata.live.protocol import quote_group

from .test_engine import T0, make_engine, meta, tick


@contextlib.asynccontextmanager
async def writes_held(store, ms: int = 5000):
    """Redis holds every write (scripts included) until the block ends; reads go on."""
    await store.redis.execute_command("CLIENT", "PAUSE", ms, "WRITE")
    try:
        yield
    finally:
        await store.redis.execute_command("CLIENT", "UNPAUSE")


async def history(store, iid: int) -> list[tuple[int, float]]:
    """(seq, last price) of each quote in the instrument's resume history, oldest first."""
    entries = await store.redis.xrange(f"md:h:{iid}")
    return [(int(f[b"s"]), orjson.loads(f[b"q"])["last"]) for _, f in entries]


def published(recorder, iid: int) -> list[tuple[int, float]]:
    return [
        (data["seq"], data["close"])
        for group, text in recorder.messages
        if group == quote_group(iid) and (data := orjson.loads(text))
    ]


async def test_the_next_batch_is_applied_while_the_previous_one_is_still_being_written(redis_store, recorder):
    engine = await make_engine(redis_store, recorder)
    async with writes_held(redis_store):
        await engine.submit([tick(T0, 100.0, size=1)])  # handed off: returns with its write held
        assert await redis_store.latest_quotes([1]) == {}
        second = asyncio.create_task(engine.submit([tick(T0 + 1, 101.0, size=1)]))
        await asyncio.sleep(0.2)
        # Applied (the engine's state has it) but waiting for the first write to finish.
        assert engine.stats.ticks_in == 2 and engine.quotes[1].last == 101.0
        assert not second.done()
    await second
    await engine.drain()
    # Each step wrote and published its own snapshot, in order, although the quote object
    # was changed by the second batch before the first was written.
    assert await history(redis_store, 1) == [(1, 100.0), (2, 101.0)]
    assert published(recorder, 1) == [(1, 100.0), (2, 101.0)]
    assert (await redis_store.latest_quotes([1]))[1].last == 101.0


async def test_steps_in_flight_keep_every_seq_once_and_in_order(redis_store, recorder):
    engine = await make_engine(redis_store, recorder, meta(1), meta(2, "MSFT"), meta(3, "M&M", "NSE", "Asia/Kolkata"))
    price = 100.0
    for n in range(60):
        batch = []
        for k in range(20):
            price += 0.01
            batch.append(tick(T0 + n * 1000 + k, round(price, 2), size=1, iid=1 + (n + k) % 3))
        await engine.submit(batch)
    await engine.drain()
    for iid in (1, 2, 3):
        seqs = [s for s, _ in await history(redis_store, iid)]
        assert seqs == list(range(1, engine.quotes[iid].seq + 1))
        assert [s for s, _ in published(recorder, iid)] == seqs
        assert (await redis_store.latest_quotes([iid]))[iid] == engine.quotes[iid]


async def test_a_failed_write_is_raised_to_the_next_submit_and_to_drain(redis_store, recorder):
    engine = await make_engine(redis_store, recorder)
    await redis_store.redis.set("md:q", "not a hash")  # every write script now fails (WRONGTYPE)
    await engine.submit([tick(T0, 100.0, size=1)])
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await engine.submit([tick(T0 + 1, 101.0, size=1)])
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await engine.drain()
    await redis_store.redis.delete("md:q")
    await engine.submit([tick(T0 + 2, 102.0, size=1)])
    await engine.drain()
    quote = (await redis_store.latest_quotes([1]))[1]
    assert (quote.last, quote.seq) == (102.0, 3)


async def test_a_submit_cancelled_while_waiting_still_has_its_batch_written(redis_store, recorder):
    engine = await make_engine(redis_store, recorder)
    async with writes_held(redis_store):
        await engine.submit([tick(T0, 100.0, size=1)])
        waiting = asyncio.create_task(engine.submit([tick(T0 + 1, 101.0, size=1)]))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    await engine.drain()
    assert await history(redis_store, 1) == [(1, 100.0), (2, 101.0)]


async def test_process_and_close_bars_return_only_once_everything_is_written(redis_store, recorder):
    engine = await make_engine(redis_store, recorder)
    await engine.submit([tick(T0 + 5, 100.0, size=2)])
    closed = await engine.close_bars(now_ms=T0 + 60_000)
    assert [b.volume for b in closed] == [2]
    assert (await redis_store.persist_lag())["pending"] == 1  # written before close_bars returned
    await engine.process([tick(T0 + 60_001, 101.0, size=1)])
    assert (await redis_store.latest_quotes([1]))[1].last == 101.0
