"""Batched frames (``batch_ms``), the frames' send path and per-process encoding of stored quotes."""

from __future__ import annotations

import asyncio
import gc
import itertools
import tracemalloc

import orjson
import pytest

from core.request_id import RequestIdMiddleware
from marketdata.live.batchclock import batch_clock
from marketdata.live.outbox import Outbox
from marketdata.live.protocol import encode, quote_payload, quote_texts
from marketdata.tests.ws_support import (
    connect_as,
    empty_store,
    make_engine,
    now_ms,
    receive,
    tick,
    use_redis_layer,
)
from marketdata.ws_middleware import SCOPE_RAW_SEND, TransportBacklogMiddleware

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def redis_layer(settings):
    use_redis_layer(settings, LIVE_RESUME_HISTORY_LEN=20, LIVE_RESUME_HISTORY_AGE_S=60)


@pytest.fixture
async def store():
    async with empty_store(history_len=20, history_age_s=60) as store:
        yield store


async def subscribed(communicator, *names: str, **extra) -> None:
    await communicator.send_json_to({"message_type": "subscribe", "channels": list(names), **extra})
    for name in names:
        assert await receive(communicator) == {"message_type": "info", "message": f"Subscribed to {name}"}


# --- the outbox ------------------------------------------------------------------------------------
class Recorder:
    """An ASGI ``send`` that records the text frames."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, message: dict) -> None:
        self.texts.append(message["text"])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def messages(frame: str) -> list:
    batch = orjson.loads(frame)
    assert batch["message_type"] == "batch"
    return batch["messages"]


async def test_one_frame_per_window_holding_the_latest_of_each_channel():
    send = Recorder()
    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.set_batch(300)
    outbox.start()
    outbox.offer("quote.1", '{"n":1}')
    outbox.offer("quote.2", '{"n":2}')
    await settle()
    assert [messages(t) for t in send.texts] == [[{"n": 1}, {"n": 2}]]  # the first batch goes at once
    for i in range(3, 10):  # inside the window: conflated, nothing sent
        outbox.offer("quote.1", f'{{"n":{i}}}')
        outbox.offer("quote.3", f'{{"m":{i}}}')
    await settle()
    assert len(send.texts) == 1 and outbox.conflated == 12
    assert outbox.reply('{"message_type":"pong"}')  # replies are not held by the window
    await settle()
    assert send.texts[1] == '{"message_type":"pong"}'
    for _ in range(200):
        if len(send.texts) == 3:
            break
        await asyncio.sleep(0.01)
    assert messages(send.texts[2]) == [{"n": 9}, {"m": 9}]
    await asyncio.sleep(0.05)
    assert len(send.texts) == 3
    await outbox.stop()


async def test_a_batch_carries_the_replay_in_order_before_the_pending_updates():
    send = Recorder()
    outbox = Outbox(send, max_pending=10, max_replies=10, max_replay=100)
    outbox.set_batch(50)
    outbox.begin_resume("quote.1")
    outbox.offer("quote.1", '{"seq":4}')  # held during the resume
    outbox.offer("quote.2", '{"other":1}')
    assert outbox.end_resume("quote.1", ['{"seq":2}', '{"seq":3}'], 3)
    outbox.offer("quote.1", '{"seq":5}')
    outbox.start()
    await settle()
    assert messages(send.texts[0]) == [{"seq": 2}, {"seq": 3}, {"seq": 4}, {"other": 1}, {"seq": 5}]
    await outbox.stop()


async def test_a_batch_frame_holds_at_most_max_pending_messages_the_rest_follows():
    send = Recorder()
    outbox = Outbox(send, max_pending=3, max_replies=10, max_replay=100)
    outbox.set_batch(10)
    outbox.begin_resume("quote.1")
    assert outbox.end_resume("quote.1", [f'{{"seq":{i}}}' for i in range(1, 6)], 5)
    outbox.offer("quote.2", '{"x":1}')
    outbox.start()
    for _ in range(200):
        if len(send.texts) == 2:
            break
        await asyncio.sleep(0.01)
    assert [messages(t) for t in send.texts] == [
        [{"seq": 1}, {"seq": 2}, {"seq": 3}],
        [{"seq": 4}, {"seq": 5}, {"x": 1}],
    ]
    await outbox.stop()


async def test_batched_clients_share_one_timer_per_interval_not_one_each():
    """Between windows an update only replaces what waits; one clock per interval ends the window for all.

    Before: every batched outbox that had sent a frame armed a timer of its own (200 clients,
    200 timers) and woke its sender twice per window.
    """
    loop = asyncio.get_running_loop()
    sends = [Recorder() for _ in range(200)]
    outboxes = [Outbox(send, max_pending=10, max_replies=10) for send in sends]
    for i, outbox in enumerate(outboxes):
        outbox.set_batch(40 if i % 2 else 60)
        outbox.start()
        outbox.offer("quote.1", '{"n":1}')
    await settle()
    assert all(len(send.texts) == 1 for send in sends)  # the first frame goes at once
    timers = len([h for h in loop._scheduled if not h.cancelled()])
    for outbox in outboxes:  # inside the window: held, nothing scheduled per client
        outbox.offer("quote.1", '{"n":2}')
        outbox.offer("quote.2", '{"m":2}')
    await settle()
    assert len([h for h in loop._scheduled if not h.cancelled()]) == timers <= 2  # one per interval
    assert all(len(send.texts) == 1 for send in sends)
    for _ in range(100):
        if all(len(send.texts) == 2 for send in sends):
            break
        await asyncio.sleep(0.01)
    assert all(messages(send.texts[1]) == [{"n": 2}, {"m": 2}] for send in sends)
    for outbox in outboxes:
        await outbox.stop()
    assert not batch_clock(0.04).held and not batch_clock(0.06).held


async def test_a_held_window_keeps_its_pace_and_a_quiet_client_sends_its_next_update_at_once():
    send = Recorder()
    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.set_batch(50)
    outbox.start()
    loop = asyncio.get_running_loop()
    times = []
    for i in range(4):  # busy: one frame a window, each at least 50 ms after the previous
        outbox.offer("quote.1", f'{{"n":{i}}}')
        for _ in range(500):
            if len(send.texts) > i:
                break
            await asyncio.sleep(0.002)
        times.append(loop.time())
    assert len(send.texts) == 4
    assert all(later - earlier >= 0.045 for earlier, later in itertools.pairwise(times))
    await asyncio.sleep(0.15)  # quiet for more than a window: the clock let it go
    assert not outbox.holding and not batch_clock(0.05).held
    outbox.offer("quote.1", '{"n":9}')
    await settle()
    assert messages(send.texts[-1]) == [{"n": 9}]
    await outbox.stop()


async def test_the_clock_sends_a_held_frame_itself_without_waking_the_sender():
    """Before: every window woke each client's sender task (a timer, then a wake-up to send)."""
    send = Recorder()
    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.set_batch(30)
    outbox.start()
    outbox.offer("quote.1", '{"n":1}')
    await settle()
    waiting = outbox._waiter  # the sender, idle after the first frame
    assert len(send.texts) == 1 and waiting is not None and not waiting.done()
    for i in range(2, 6):
        outbox.offer("quote.1", f'{{"n":{i}}}')
        for _ in range(200):
            if len(send.texts) == i:
                break
            await asyncio.sleep(0.005)
    assert [messages(t) for t in send.texts[1:]] == [[{"n": i}] for i in range(2, 6)]
    assert outbox._waiter is waiting and not waiting.done()  # four frames, the sender never woke
    assert outbox.sent == 5
    await outbox.stop()


async def test_a_frame_the_clock_sends_that_has_to_wait_finishes_before_the_next_reply():
    release = asyncio.Event()
    texts: list[str] = []

    async def send(message):
        if "batch" in message["text"] and len(texts) == 1:
            await release.wait()  # the transport is full: this send waits
        texts.append(message["text"])

    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.set_batch(20)
    outbox.start()
    outbox.offer("quote.1", '{"n":1}')
    await settle()
    outbox.offer("quote.1", '{"n":2}')
    for _ in range(100):
        if outbox._flight is not None:
            break
        await asyncio.sleep(0.005)
    assert outbox._flight is not None and outbox.busy_since is not None  # the watchdog sees it
    assert outbox.reply('{"message_type":"pong"}')
    await asyncio.sleep(0.05)
    assert len(texts) == 1  # the reply waits for the frame in flight
    release.set()
    await settle()
    assert messages(texts[1]) == [{"n": 2}] and texts[2] == '{"message_type":"pong"}'
    assert outbox.busy_since is None and outbox.sent == 3
    await outbox.stop()


async def test_updates_take_the_plain_path_once_the_snapshot_and_resume_books_are_empty():
    send = Recorder()
    outbox = Outbox(send, max_pending=10, max_replies=10, max_replay=100)
    outbox.expect_snapshot("quote.1")
    outbox.snapshot("quote.1", '{"seq":3}', seq=3)
    outbox.offer("quote.1", '{"seq":3}')  # already in the snapshot: dropped
    outbox.offer("quote.1", '{"seq":4}')
    assert not outbox._books
    outbox.begin_resume("quote.2")  # the books fill again: updates of quote.2 are held
    outbox.offer("quote.2", '{"seq":8}')
    assert outbox.end_resume("quote.2", ['{"seq":7}'], 7)
    outbox.offer("quote.2", '{"seq":8}')  # replayed already: dropped
    outbox.start()
    await settle()
    assert send.texts == ['{"seq":7}', '{"seq":8}', '{"seq":4}']  # the replay first, then the rest
    await outbox.stop()


# --- through the Channels stack --------------------------------------------------------------------
async def test_batch_ms_in_the_query_batches_snapshots_and_updates_conflated(store, user, aapl, msft):
    engine = await make_engine(store, aapl, msft)
    await engine.process([tick(aapl, 100.0), tick(msft, 200.0)])
    batched = await connect_as(user, "&batch_ms=1000")
    plain = await connect_as(user)
    for communicator in (batched, plain):
        await subscribed(communicator, "AAPL", "MSFT")
    snapshots = (await receive(batched))["messages"]  # the first batch goes at once
    assert [(m["message_type"], m["symbol"], m["close"]) for m in snapshots] == [
        ("snapshot", "AAPL", 100.0),
        ("snapshot", "MSFT", 200.0),
    ]
    assert [(await receive(plain))["message_type"] for _ in range(2)] == ["snapshot", "snapshot"]
    texts = []
    for i in range(1, 4):  # inside the batch client's one-second window
        await engine.process([tick(aapl, 100.0 + i, ts=now_ms() + i), tick(msft, 200.0 + i, ts=now_ms() + i)])
        texts.append(
            {
                "AAPL": encode(quote_payload(engine.quotes[aapl.pk], "AAPL", "NASDAQ")),
                "MSFT": encode(quote_payload(engine.quotes[msft.pk], "MSFT", "NASDAQ")),
            }
        )
    # The default client: one message per frame, byte for byte the engine's text.
    for sent in texts:
        got = {}
        for _ in range(2):
            raw = await plain.receive_from(timeout=3)
            got[orjson.loads(raw)["symbol"]] = raw
        assert got == sent
    # The batch client: one frame with the latest of each channel, the engine's texts joined.
    raw = await batched.receive_from(timeout=3)
    latest = texts[-1]
    assert raw in (
        '{"message_type":"batch","messages":[' + latest["AAPL"] + "," + latest["MSFT"] + "]}",
        '{"message_type":"batch","messages":[' + latest["MSFT"] + "," + latest["AAPL"] + "]}",
    )
    assert await batched.receive_nothing(timeout=0.2)
    await batched.disconnect()
    await plain.disconnect()


async def test_the_options_message_turns_batching_on_and_off(store, user, aapl):
    engine = await make_engine(store, aapl)
    client = await connect_as(user)
    await client.send_json_to({"message_type": "options", "batch_ms": 1000})
    assert await receive(client) == {"message_type": "info", "message": "Batching every 1000 ms", "batch_ms": 1000}
    await subscribed(client, "AAPL")
    await engine.process([tick(aapl, 150.0)])
    first = await receive(client)  # the snapshot or the update, whichever was read first: one message
    assert [(m["close"], m["seq"]) for m in first["messages"]] == [(150.0, 1)]
    await client.send_json_to({"message_type": "options", "batch_ms": 0})
    assert await receive(client) == {
        "message_type": "info",
        "message": "Batching off: one message per frame",
        "batch_ms": 0,
    }
    await engine.process([tick(aapl, 151.0, ts=now_ms() + 1)])
    assert (await receive(client))["close"] == 151.0  # a plain data frame again, at once
    await client.disconnect()


@pytest.mark.parametrize(
    "options",
    [
        {"batch_ms": 1001},
        {"batch_ms": -1},
        {"batch_ms": 1.5},
        {"batch_ms": "50"},
        {"batch_ms": True},
        {"batch_ms": None},
        {},
        {"batch_ms": 10, "compress": True},
    ],
)
async def test_bad_options_get_invalid_option_and_the_socket_stays_open(store, user, options):
    client = await connect_as(user)
    await client.send_json_to({"message_type": "options", **options})
    error = await receive(client)
    assert (error["message_type"], error["code"]) == ("error", "invalid_option")
    await client.send_json_to({"message_type": "ping"})
    assert await receive(client) == {"message_type": "pong"}
    await client.disconnect()


@pytest.mark.parametrize("value", ["abc", "-5", "1001", "2.5", "", "99999"])
async def test_a_bad_batch_ms_in_the_query_gets_the_error_and_plain_frames(store, user, aapl, value):
    engine = await make_engine(store, aapl)
    client = await connect_as(user, f"&batch_ms={value}")
    error = await receive(client)
    assert (error["message_type"], error["code"]) == ("error", "invalid_option")
    await subscribed(client, "AAPL")
    await engine.process([tick(aapl, 99.0)])
    message = await receive(client)  # a plain frame (the snapshot or the update, whichever was read first)
    assert (message["message_type"], message["close"]) in {("data", 99.0), ("snapshot", 99.0)}
    await client.disconnect()


async def test_a_resume_in_a_batch_is_ordered_and_gapless(store, user, aapl):
    engine = await make_engine(store, aapl)
    for i in range(9):
        await engine.process([tick(aapl, 100.0 + i, ts=now_ms() + i)])
    client = await connect_as(user, "&batch_ms=200")
    await subscribed(client, "AAPL", since={"AAPL": 5})
    resumed = await receive(client)
    assert (resumed["message_type"], resumed["recovered"], resumed["replayed"]) == ("resumed", True, 4)
    replay = (await receive(client))["messages"]
    assert [(m["message_type"], m["seq"]) for m in replay] == [("data", 6), ("data", 7), ("data", 8), ("data", 9)]
    await engine.process([tick(aapl, 300.0, ts=now_ms() + 20)])
    live = (await receive(client))["messages"]
    assert [(m["seq"], m["close"]) for m in live] == [(10, 300.0)]
    await client.disconnect()


async def test_the_seed_protocol_ignores_batch_ms(store, user, aapl):
    engine = await make_engine(store, aapl)
    client = await connect_as(user, "&batch_ms=500")
    await client.send_json_to({"message_type": 1, "channel": "AAPL"})
    assert (await receive(client))["message_type"] == 10
    for i in range(2):
        await engine.process([tick(aapl, 170.0 + i, ts=now_ms() + i)])
        output = await client.receive_output(timeout=3)
        assert output["type"] == "websocket.send" and output["bytes"].startswith(b"AAPL\x00")
    await client.disconnect()


# --- one encode per update, per process ------------------------------------------------------------
async def test_a_snapshot_is_encoded_once_for_every_client_subscribing(store, user, aapl):
    engine = await make_engine(store, aapl)
    await engine.process([tick(aapl, 185.0)])
    clients = [await connect_as(user) for _ in range(3)]
    built = quote_texts.built
    for client in clients:
        await subscribed(client, "AAPL")
    snapshots = [await client.receive_from(timeout=3) for client in clients]
    assert snapshots == [encode(quote_payload(engine.quotes[aapl.pk], "AAPL", "NASDAQ", "snapshot"))] * 3
    assert quote_texts.built == built + 1
    for client in clients:
        await client.disconnect()


async def test_frames_go_through_the_servers_own_send_not_the_request_id_wrapper():
    seen = {}

    async def app(scope, receive, send):
        seen["raw"], seen["send"] = scope[SCOPE_RAW_SEND], send

    async def server_send(message):
        pass

    async def server_receive():
        return {"type": "websocket.connect"}

    stack = RequestIdMiddleware(TransportBacklogMiddleware(app))
    await stack({"type": "websocket", "headers": []}, server_receive, server_send)
    assert seen["raw"] is server_send  # the frames skip the wrapper
    assert seen["send"] is not server_send  # the handshake still goes through it (X-Request-ID)


# --- what an idle connection's outbox costs ----------------------------------------------------------
async def test_an_idle_outbox_and_its_sender_take_under_2_5_kib():
    """Replay queue, resume and snapshot books are made when first needed; the sender waits on a bare future.

    Before: an asyncio.Event (with its deque), three deques and four sets or dicts per
    connection, about 4.5 KiB with the sender task.
    """

    async def send(message):
        pass

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        outboxes = [Outbox(send, max_pending=1000, max_replies=2000) for _ in range(500)]
        for outbox in outboxes:
            outbox.start()
        await settle()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    per_outbox = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / len(outboxes)
    assert per_outbox < 2.5 * 1024
    for outbox in outboxes:
        await outbox.stop()
