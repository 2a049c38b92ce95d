"""``/ws`` resume: ``subscribe`` with ``since`` replays what a client missed, or says it cannot."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from marketdata.live.hub import close_hub
from marketdata.live.outbox import Outbox
from marketdata.live.protocol import encode, quote_payload
from marketdata.live.store.redis import RedisTickStore
from marketdata.live.types import Quote
from marketdata.tests.ws_support import (
    connect_as,
    empty_store,
    make_engine,
    now_ms,
    receive,
    redis_url,
    tick,
    use_redis_layer,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def redis_layer(settings):
    use_redis_layer(settings, LIVE_RESUME_HISTORY_LEN=20, LIVE_RESUME_HISTORY_AGE_S=60)


@pytest.fixture
async def store():
    async with empty_store(history_len=20, history_age_s=60) as store:
        yield store


@pytest.fixture
async def client(user):
    communicator = await connect_as(user)
    yield communicator
    await communicator.disconnect()


async def trade(engine, instrument, n: int, start: float = 100.0) -> None:
    # Each trade later than the last one (an earlier one would be a late tick, not the last price).
    last = engine.quotes.get(instrument.pk)
    base = max(now_ms(), last.ts + 1) if last is not None else now_ms()
    for i in range(n):
        await engine.process([tick(instrument, start + i, ts=base + i)])


async def test_a_reconnecting_client_gets_what_it_missed_in_order_then_live(store, client, aapl):
    engine = await make_engine(store, aapl)
    await trade(engine, aapl, 9)
    await client.send_json_to({"message_type": "subscribe", "channels": ["AAPL"], "since": {"AAPL": 5}})
    assert await receive(client) == {"message_type": "info", "message": "Subscribed to AAPL"}
    assert await receive(client) == {
        "message_type": "resumed",
        "channel": "AAPL",
        "recovered": True,
        "replayed": 4,
        "seq": 9,
    }
    replayed = [await receive(client) for _ in range(4)]
    assert [(m["message_type"], m["seq"]) for m in replayed] == [("data", 6), ("data", 7), ("data", 8), ("data", 9)]
    assert replayed[0] == orjson.loads(encode(quote_payload(_history[(aapl.pk, 6)], "AAPL", "NASDAQ")))
    await trade(engine, aapl, 1, start=200.0)
    live = await receive(client)
    assert (live["message_type"], live["seq"], live["close"]) == ("data", 10, 200.0)
    assert await client.receive_nothing(timeout=0.2)


_history: dict[tuple[int, int], Quote] = {}


@pytest.fixture(autouse=True)
def remember_history(monkeypatch):
    """Keep every quote written, by (instrument, seq), to compare the replay with."""
    from marketdata.live.store import redis as redis_store

    original = redis_store._write_document

    def spy(batch, *args):
        for q in batch.quotes:
            _history[(q.instrument_id, q.seq)] = Quote.from_dict(q.as_dict())
        return original(batch, *args)

    monkeypatch.setattr(redis_store, "_write_document", spy)
    yield
    _history.clear()


async def test_a_client_that_missed_nothing_is_recovered_with_no_replay(store, client, aapl):
    engine = await make_engine(store, aapl)
    await trade(engine, aapl, 3)
    await client.send_json_to({"message_type": "subscribe", "channel": "AAPL", "since": {"AAPL": 3}})
    await receive(client)  # info
    assert await receive(client) == {
        "message_type": "resumed",
        "channel": "AAPL",
        "recovered": True,
        "replayed": 0,
        "seq": 3,
    }
    assert await client.receive_nothing(timeout=0.2)  # no snapshot either: the client is up to date


async def test_a_gap_the_history_no_longer_covers_gets_a_snapshot_marked_not_recovered(store, client, aapl):
    engine = await make_engine(store, aapl)
    await trade(engine, aapl, 30)  # the history keeps the last 20: 11..30
    await client.send_json_to({"message_type": "subscribe", "channels": ["AAPL"], "since": {"AAPL": 9}})
    await receive(client)  # info
    resumed = await receive(client)
    assert resumed == {"message_type": "resumed", "channel": "AAPL", "recovered": False, "replayed": 0, "seq": 30}
    snapshot = await receive(client)
    assert (snapshot["message_type"], snapshot["seq"], snapshot["recovered"]) == ("snapshot", 30, False)
    assert snapshot["close"] == 129.0
    assert await client.receive_nothing(timeout=0.2)


async def test_a_seq_ahead_of_the_server_is_not_recovered(store, client, aapl):
    """The engine started over (its state lost): seq went back, so the client's is ahead."""
    engine = await make_engine(store, aapl)
    await trade(engine, aapl, 2)
    await client.send_json_to({"message_type": "subscribe", "channels": ["AAPL"], "since": {"AAPL": 1042}})
    await receive(client)
    assert (await receive(client))["recovered"] is False
    snapshot = await receive(client)
    assert (snapshot["message_type"], snapshot["seq"], snapshot["recovered"]) == ("snapshot", 2, False)


async def test_channels_without_since_in_the_same_frame_get_their_plain_snapshot(store, client, aapl, msft):
    engine = await make_engine(store, aapl, msft)
    await trade(engine, aapl, 3)
    await engine.process([tick(msft, 400.0)])
    await client.send_json_to(
        {"message_type": "subscribe", "channels": ["AAPL", "MSFT", "AAPL@1m"], "since": {"AAPL": 2}}
    )
    frames = [await receive(client) for _ in range(6)]
    kinds = [(f["message_type"], f.get("symbol") or f.get("channel") or f.get("message")) for f in frames]
    assert kinds[:3] == [
        ("info", "Subscribed to AAPL"),
        ("info", "Subscribed to MSFT"),
        ("info", "Subscribed to AAPL@1m"),
    ]
    # between channels the order is free; within AAPL the acknowledgement comes first
    assert sorted(kinds[3:]) == [("data", "AAPL"), ("resumed", "AAPL"), ("snapshot", "MSFT")]
    assert kinds.index(("resumed", "AAPL")) < kinds.index(("data", "AAPL"))
    by_kind = {f["message_type"]: f for f in frames[3:]}
    assert "recovered" not in by_kind["snapshot"] and by_kind["data"]["seq"] == 3


async def test_no_gap_and_no_duplicate_while_the_engine_keeps_writing(store, client, aapl, settings):
    """Updates published between the join and the history read are neither lost nor repeated."""
    settings.LIVE_RESUME_HISTORY_LEN = 100_000  # the hub's store reads what the engine wrote
    engine = await make_engine(RedisTickStore(redis_url(), history_len=100_000), aapl)
    await trade(engine, aapl, 5)
    stop = asyncio.Event()

    async def keep_trading() -> None:
        price = 300.0
        while not stop.is_set():
            price += 0.01
            await engine.process([tick(aapl, price)])
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_trading())
    try:
        await asyncio.sleep(0.05)
        await client.send_json_to({"message_type": "subscribe", "channels": ["AAPL"], "since": {"AAPL": 3}})
        await receive(client)  # info
        resumed = await receive(client)
        assert resumed["recovered"] is True
        seqs = [(await receive(client))["seq"] for _ in range(resumed["replayed"] + 30)]
    finally:
        stop.set()
        await writer
        await engine.store.close()
    assert seqs == list(range(4, 4 + len(seqs)))


async def test_the_embedded_mode_resumes_from_the_memory_store(settings, user, aapl, monkeypatch):
    import marketdata.live.store
    from marketdata.live.store import get_tick_store

    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(marketdata.live.store, "_memory_store", None)
    engine = await make_engine(get_tick_store(), aapl)
    await trade(engine, aapl, 4)
    try:
        communicator = await connect_as(user)
        await communicator.send_json_to({"message_type": "subscribe", "channels": ["AAPL"], "since": {"AAPL": 1}})
        await receive(communicator)
        assert (await receive(communicator))["recovered"] is True
        assert [(await receive(communicator))["seq"] for _ in range(3)] == [2, 3, 4]
        await trade(engine, aapl, 1, start=500.0)
        assert (await receive(communicator))["seq"] == 5
        await communicator.disconnect()
    finally:
        await close_hub()


@pytest.mark.parametrize(
    ("since", "code"),
    [
        ([5], "invalid_since"),
        ("5", "invalid_since"),
        (None, "invalid_since"),
        ({"AAPL": -1}, "invalid_since"),
        ({"AAPL": 1.5}, "invalid_since"),
        ({"AAPL": "7"}, "invalid_since"),
        ({"AAPL": True}, "invalid_since"),
        ({"AAPL": 2**60}, "invalid_since"),
        ({"MSFT": 3}, "invalid_since"),  # not a channel of the frame
        ({"AAPL@1m": 3}, "invalid_since"),  # bars carry no seq
        ({f"S{i}": 1 for i in range(101)}, "too_many_names"),
    ],
)
async def test_a_bad_since_is_refused_whole_and_the_socket_stays_open(store, client, aapl, since, code):
    await client.send_json_to({"message_type": "subscribe", "channels": ["AAPL", "AAPL@1m"], "since": since})
    error = await receive(client)
    assert (error["message_type"], error["code"]) == ("error", code)
    await client.send_json_to({"message_type": "ping"})
    assert await receive(client) == {"message_type": "pong"}  # nothing subscribed, still open


def _text(seq: int) -> str:
    return encode({"message_type": "data", "symbol": "AAPL", "seq": seq})


async def test_the_outbox_holds_live_updates_during_a_resume_in_order():
    sent: list[str] = []

    async def send(event):
        sent.append(event["text"])

    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.begin_resume("quote.1")
    for seq in (5, 6, 7):  # arrive while the history is read; 5 is also in the history
        outbox.offer("quote.1", _text(seq))
    assert outbox.end_resume("quote.1", [_text(3), _text(4), _text(5)], 5)
    outbox.offer("quote.1", _text(7))  # a late duplicate
    outbox.offer("quote.1", _text(8))
    outbox.start()
    for _ in range(100):
        if len(sent) == 6:
            break
        await asyncio.sleep(0.01)
    await outbox.stop()
    assert [orjson.loads(t)["seq"] for t in sent] == [3, 4, 5, 6, 7, 8]


def test_the_outbox_says_when_held_updates_overflowed():
    async def send(event):
        raise AssertionError

    outbox = Outbox(send, max_pending=2, max_replies=2)
    outbox.begin_resume("quote.1")
    for seq in (5, 6, 7):
        outbox.offer("quote.1", _text(seq))
    assert not outbox.end_resume("quote.1", [], 4)
    assert [orjson.loads(t)["seq"] for _, t in outbox.replay] == [5, 7]
    assert not outbox.end_resume("quote.2", [], 0)  # never begun (or left meanwhile)
