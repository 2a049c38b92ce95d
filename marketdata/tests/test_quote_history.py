"""The per-instrument quote history behind ``/ws`` resume: the same tests on both tick stores."""

from __future__ import annotations

import asyncio

import pytest

from marketdata.live.store import StoreBatch, TickStore
from marketdata.live.store.memory import MemoryTickStore
from marketdata.live.store.redis import RedisTickStore, history_key
from marketdata.live.types import Quote
from marketdata.tests.ws_support import now_ms, redis_url

IID = 7
OTHER = 8


@pytest.fixture(params=["memory", "redis"])
async def make_store(request):
    """``make_store(history_len=..., history_age_s=...)``: an empty store of either kind."""
    made: list[TickStore] = []

    async def make(**limits) -> TickStore:
        if request.param == "memory":
            store = MemoryTickStore(**limits)
        else:
            store = RedisTickStore(redis_url(), **limits)
            await store.redis.flushdb()
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, RedisTickStore):
            await store.redis.flushdb()
        await store.close()


def quote(seq: int, instrument_id: int = IID) -> Quote:
    price = 100.0 + seq / 100
    return Quote(instrument_id, now_ms(), price, 100.0, price, 100.0, volume=seq * 10, seq=seq)


async def write_seqs(store: TickStore, seqs, instrument_id: int = IID) -> None:
    """One engine step per seq, as the engine writes them."""
    for seq in seqs:
        await store.write(StoreBatch(quotes=[quote(seq, instrument_id)]))


async def test_missed_quotes_come_back_in_order_and_whole(make_store):
    store = await make_store(history_len=50, history_age_s=60)
    await write_seqs(store, range(1, 21))
    resume = (await store.quotes_since({IID: 12}))[IID]
    assert resume.recovered
    assert [q.seq for q in resume.missed] == list(range(13, 21))
    assert resume.missed[-1] == resume.latest
    assert resume.missed[0].last == pytest.approx(100.13) and resume.missed[0].volume == 130


async def test_nothing_missed_is_recovered_with_nothing_to_replay(make_store):
    store = await make_store(history_len=50, history_age_s=60)
    await write_seqs(store, range(1, 6))
    resume = (await store.quotes_since({IID: 5}))[IID]
    assert resume.recovered and resume.missed == [] and resume.latest.seq == 5


async def test_a_gap_longer_than_the_history_is_not_recovered(make_store):
    store = await make_store(history_len=10, history_age_s=60)
    await write_seqs(store, range(1, 31))
    assert (await store.quotes_since({IID: 20}))[IID].recovered  # 21..30: the last ten
    resume = (await store.quotes_since({IID: 19}))[IID]  # 20 was trimmed
    assert not resume.recovered and resume.missed is None
    assert resume.latest.seq == 30


async def test_a_seq_ahead_of_the_latest_is_not_recovered(make_store):
    """The engine lost its state and started counting again: the client's seq is from before."""
    store = await make_store(history_len=10, history_age_s=60)
    await write_seqs(store, range(1, 4))
    resume = (await store.quotes_since({IID: 900}))[IID]
    assert not resume.recovered and resume.latest.seq == 3


async def test_an_instrument_without_quotes(make_store):
    store = await make_store(history_len=10, history_age_s=60)
    found = await store.quotes_since({IID: 0, OTHER: 4})
    assert found[IID].recovered and found[IID].missed == [] and found[IID].latest is None
    assert not found[OTHER].recovered and found[OTHER].latest is None


async def test_histories_are_per_instrument(make_store):
    store = await make_store(history_len=10, history_age_s=60)
    await store.write(StoreBatch(quotes=[quote(1), quote(1, OTHER)]))
    await store.write(StoreBatch(quotes=[quote(2), quote(2, OTHER)]))
    await store.write(StoreBatch(quotes=[quote(3)]))
    found = await store.quotes_since({IID: 1, OTHER: 0})
    assert [q.seq for q in found[IID].missed] == [2, 3]
    assert [(q.instrument_id, q.seq) for q in found[OTHER].missed] == [(OTHER, 1), (OTHER, 2)]


async def test_quotes_older_than_the_age_bound_are_not_replayed(make_store):
    store = await make_store(history_len=50, history_age_s=1.0)
    await write_seqs(store, range(1, 4))
    assert (await store.quotes_since({IID: 0}))[IID].recovered
    await asyncio.sleep(1.3)
    await write_seqs(store, [4])
    assert (await store.quotes_since({IID: 3}))[IID].recovered  # 4 is fresh
    resume = (await store.quotes_since({IID: 1}))[IID]  # 2 and 3 aged out
    assert not resume.recovered and resume.latest.seq == 4


async def test_no_history_when_its_length_is_zero(make_store):
    store = await make_store(history_len=0, history_age_s=60)
    await write_seqs(store, range(1, 4))
    assert not (await store.quotes_since({IID: 2}))[IID].recovered
    assert (await store.quotes_since({IID: 3}))[IID].recovered


async def test_many_instruments_in_one_read(make_store):
    store = await make_store(history_len=5, history_age_s=60)
    ids = list(range(100, 140))  # more than one script call's chunk
    await store.write(StoreBatch(quotes=[quote(1, i) for i in ids]))
    await store.write(StoreBatch(quotes=[quote(2, i) for i in ids]))
    found = await store.quotes_since(dict.fromkeys(ids, 0))
    assert sorted(found) == ids
    assert all([q.seq for q in found[i].missed] == [1, 2] for i in ids)


async def test_the_redis_history_is_capped_and_expires():
    """The Redis keys themselves stay bounded: length exactly, idle instruments expire."""
    store = RedisTickStore(redis_url(), history_len=10, history_age_s=30)
    await store.redis.flushdb()
    try:
        await write_seqs(store, range(1, 40))
        assert await store.redis.xlen(history_key(IID)) == 10
        assert 0 < await store.redis.pttl(history_key(IID)) <= 30_000
    finally:
        await store.redis.flushdb()
        await store.close()
