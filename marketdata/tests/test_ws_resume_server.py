"""Resume across a crash: the web process is killed mid-stream, restarted, and the client misses nothing."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from marketdata.live.store.redis import RedisTickStore
from marketdata.tests.servers import Server
from marketdata.tests.ws_support import access_token, make_engine, redis_layer_settings, redis_url, tick

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FEED_INTERVAL_S = 0.05  # 20 quotes a second: a restart of a few seconds stays well inside 500


@pytest.fixture
async def store(settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    store = RedisTickStore(settings.REDIS_URL, history_len=500, history_age_s=300)
    await store.redis.flushdb()
    yield store
    await store.redis.flushdb()
    await store.close()


async def _seqs(ws, out: list[int], until: int) -> None:
    """Append the ``seq`` of every quote frame to ``out`` until ``until`` of them were read."""
    while len(out) < until:
        frame = orjson.loads(await ws.recv())
        if frame["message_type"] in ("data", "snapshot"):
            out.append(frame["seq"])


async def test_kill_the_web_process_mid_stream_and_resume_without_a_gap(django_db_setup, store, user, aapl):
    engine = await make_engine(store, aapl)
    await engine.process([tick(aapl, 100.0)])
    stop = asyncio.Event()

    async def feed() -> None:
        price = 100.0
        while not stop.is_set():
            price += 0.01
            await engine.process([tick(aapl, round(price, 2))])
            await asyncio.sleep(FEED_INTERVAL_S)

    feeding = asyncio.create_task(feed())
    token = access_token(user)
    server = await asyncio.to_thread(Server, "uvicorn")  # the feed runs on while a server starts
    seen: list[int] = []
    try:
        async with asyncio.timeout(90):
            async with connect(server.url(token)) as ws:
                await ws.send(orjson.dumps({"message_type": "subscribe", "channels": ["AAPL"]}).decode())
                await _seqs(ws, seen, 10)
                server.proc.kill()  # SIGKILL: no close frame, no clean shutdown
                server.proc.wait()
                with contextlib.suppress(websockets.ConnectionClosed):
                    await _seqs(ws, seen, 10_000)
            missed_from = engine.quotes[aapl.pk].seq
            await asyncio.to_thread(server.stop)
            server = await asyncio.to_thread(Server, "uvicorn")  # the engine kept publishing meanwhile
            assert engine.quotes[aapl.pk].seq > missed_from  # updates were published while it was down
            async with connect(server.url(token)) as ws:
                frame = {"message_type": "subscribe", "channels": ["AAPL"], "since": {"AAPL": seen[-1]}}
                await ws.send(orjson.dumps(frame).decode())
                assert orjson.loads(await ws.recv()) == {"message_type": "info", "message": "Subscribed to AAPL"}
                resumed = orjson.loads(await ws.recv())
                assert resumed["message_type"] == "resumed" and resumed["recovered"] is True
                assert resumed["replayed"] == resumed["seq"] - seen[-1] > 0
                await _seqs(ws, seen, len(seen) + resumed["replayed"] + 20)  # the replay, then live
    finally:
        stop.set()
        await feeding
        await asyncio.to_thread(server.stop)
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # no gap, no duplicate
