"""``/ws`` on real server processes (daphne, uvicorn) fed by an engine in this process through Redis."""

from __future__ import annotations

import asyncio
import statistics
import time

import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory
from marketdata.live.protocol import ChannelLayerPublisher, encode, quote_group, quote_payload
from marketdata.live.store.redis import RedisTickStore
from marketdata.live.types import Quote
from marketdata.tests.servers import STUCK_TIMEOUT_S, Server
from marketdata.tests.ws_support import (
    RawWebSocket,
    access_token,
    make_engine,
    now_ms,
    redis_layer_settings,
    redis_url,
    tick,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def servers(django_db_setup):
    """``servers(kind)``: that server, started on first use and stopped with the module."""
    started: dict[str, Server] = {}

    def get(kind: str) -> Server:
        if kind not in started:
            started[kind] = Server(kind)
        return started[kind]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture
async def store(settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    store = RedisTickStore(settings.REDIS_URL)
    await store.redis.flushdb()
    yield store
    await store.redis.flushdb()
    await store.close()


async def test_daphne_token_auth_subscribe_and_live_data_through_redis(servers, store, user, aapl):
    server = servers("daphne")
    async with asyncio.timeout(20):
        async with connect(server.url()) as anonymous:
            error = orjson.loads(await anonymous.recv())
            assert error["code"] == "auth_required"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await anonymous.recv()
            assert closed.value.rcvd.code == 4401

        engine = await make_engine(store, aapl)
        async with connect(server.url(access_token(user))) as ws:
            await ws.send(orjson.dumps({"message_type": "subscribe", "channel": "AAPL"}).decode())
            assert orjson.loads(await ws.recv()) == {"message_type": "info", "message": "Subscribed to AAPL"}
            await engine.process([tick(aapl, 187.25)])
            data = orjson.loads(await ws.recv())
            seq = 1
            if data["message_type"] == "snapshot":  # the server read the store after our write
                assert data["seq"] == 1
                # ...so the live update of seq 1 is not sent again: the next one is seq 2
                await engine.process([tick(aapl, 187.25)])
                data = orjson.loads(await ws.recv())
                seq = 2
            assert (data["message_type"], data["symbol"], data["exchange"]) == ("data", "AAPL", "NASDAQ")
            assert data["close"] == 187.25 and data["seq"] == seq
            await ws.send('{"message_type": "ping"}')
            assert orjson.loads(await ws.recv()) == {"message_type": "pong"}


SLOW_INSTRUMENTS = 100
FLOOD_S = 3.0
PADDING = "x" * 4000  # large updates fill buffers fast


@pytest.fixture
def many_instruments():
    exchange = ExchangeFactory(code="FLOOD", timezone="UTC")
    return [InstrumentFactory(symbol=f"FLOOD{i:03d}", exchange=exchange) for i in range(SLOW_INSTRUMENTS)]


def flood_round(instruments, n: int) -> list[tuple[str, str]]:
    """One large data message per instrument, pre-serialized as the engine does; ``seq`` is ``n``."""
    ts = now_ms()
    out = []
    for i in instruments:
        quote = Quote(instrument_id=i.pk, ts=ts, last=100.0 + n % 7, open=100.0, high=107.0, low=99.0, seq=n)
        payload = quote_payload(quote, i.symbol, i.exchange.code)
        out.append((quote_group(i.pk), encode({**payload, "padding": PADDING})))
    return out


async def _drain(slow: RawWebSocket, limit_s: float) -> tuple[int, object]:
    """Read what the server still sends the slow client: ``(data messages, how it ended)``."""
    data = 0
    try:
        async with asyncio.timeout(limit_s):
            while True:
                message = await slow.recv_json()
                data += message["message_type"] == "data"
    except EOFError as exc:
        return data, exc.args[0] if exc.args else "eof"
    except ConnectionResetError:
        return data, "reset"


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_a_client_that_stops_reading_never_delays_a_fast_one(servers, kind, store, user, many_instruments):
    server = servers(kind)
    token = access_token(user)
    symbols = [i.symbol for i in many_instruments]
    publisher = ChannelLayerPublisher()
    latencies: list[float] = []
    sent: dict[int, float] = {}
    async with asyncio.timeout(40):
        slow = RawWebSocket("127.0.0.1", server.port, f"/ws?token={token}", rcvbuf=4096)
        await slow.connect()
        await slow.send_json({"message_type": "subscribe", "channels": symbols})
        for _ in symbols:
            assert (await slow.recv_json())["message_type"] == "info"
        # From here on the slow client reads nothing.

        async with connect(server.url(token)) as fast:
            await fast.send(orjson.dumps({"message_type": "subscribe", "channel": symbols[0]}).decode())
            assert orjson.loads(await fast.recv())["message_type"] == "info"

            async def read_fast():
                async for raw in fast:
                    message = orjson.loads(raw)
                    if message["message_type"] == "data":
                        latencies.append(time.monotonic() - sent[message["seq"]])

            reader = asyncio.create_task(read_fast())
            rss_before = server.rss_mb()
            rounds, offered_bytes, rss_peak = 0, 0, rss_before
            started = time.monotonic()
            while time.monotonic() - started < FLOOD_S:
                rounds += 1
                messages = flood_round(many_instruments, rounds)
                sent[rounds] = time.monotonic()
                await publisher.publish(messages)
                offered_bytes += sum(len(text) for _, text in messages)
                if rounds % 10 == 0:
                    rss_peak = max(rss_peak, server.rss_mb())
            await asyncio.sleep(0.5)
            reader.cancel()

        await asyncio.sleep(STUCK_TIMEOUT_S + 1.0)  # the server gives up on the slow client
        slow_data, ending = await _drain(slow, limit_s=10)
        slow.close()

    log = server.tail()
    summary = (
        f"{kind}: {rounds} rounds, {offered_bytes / 2**20:.1f} MiB offered to the slow client, which got "
        f"{slow.received_bytes / 2**20:.2f} MiB ({slow_data} data messages) and ended with {ending}; fast client: "
        f"{len(latencies)} updates, median latency {statistics.median(latencies or [0]) * 1000:.1f} ms, "
        f"max {max(latencies or [0]) * 1000:.1f} ms; server RSS {rss_before:.0f} -> {rss_peak:.0f} MiB"
    )
    print(summary)
    assert offered_bytes > 24 * 2**20, summary  # enough to matter
    # The fast client got (nearly) every update, each soon after it was published.
    assert len(latencies) >= rounds * 0.9, summary
    assert statistics.median(latencies) < 0.1 and max(latencies) < 1.0, summary
    # The slow one got a small part, was disconnected, and the server's memory stayed bounded.
    assert slow.received_bytes < offered_bytes / 5, summary
    assert ending in (4408, "eof", "reset"), summary
    assert rss_peak - rss_before < 16, summary  # without the backlog probe daphne grows by all it is offered
    assert "closing stuck websocket client" in log, log
