"""The seed protocol on ``/ws`` through the real ASGI stack, the Redis pub/sub layer and a real engine."""

from __future__ import annotations

import asyncio
import runpy
import struct

import orjson
import pytest
from channels.testing import WebsocketCommunicator

import marketapp.asgi
from marketapp.asgi import application
from marketdata.live.hub import close_hub, get_hub
from marketdata.live.protocol import encode, quote_group, quote_payload
from marketdata.live.store.redis import RedisTickStore
from marketdata.live.types import Tick
from marketdata.tests.ws_support import access_token, make_engine, now_ms, redis_layer_settings, redis_url, tick
from marketdata.ws_seed import frame_heads

pytestmark = pytest.mark.django_db(transaction=True)

FRONT_END = "http://127.0.0.1:4173"


@pytest.fixture(autouse=True)
def redis_layer(settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    settings.WS_AUTH_TIMEOUT_S = 0.5
    settings.WS_ALLOW_ANONYMOUS = False
    settings.CORS_ALLOWED_ORIGINS = [FRONT_END]


@pytest.fixture
async def store():
    store = RedisTickStore(redis_url())
    await store.redis.flushdb()
    yield store
    await close_hub()
    await store.redis.flushdb()
    await store.close()


@pytest.fixture
def token(user):
    return access_token(user)


async def connect(path: str, app=application, origin: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else None
    communicator = WebsocketCommunicator(app, path, headers=headers)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    return communicator


async def receive(communicator) -> dict:
    return await communicator.receive_json_from(timeout=3)


async def receive_binary(communicator) -> bytes:
    output = await communicator.receive_output(timeout=3)
    assert output["type"] == "websocket.send" and output.get("bytes") is not None, output
    return output["bytes"]


def decode(frame: bytes) -> dict:
    """The update frame as the seed front end reads it (offsets of the spec's table)."""
    n = frame.index(b"\x00")
    assert len(frame) == n + 29
    return {
        "symbol": frame[:n].decode(),
        "ts": struct.unpack_from(">q", frame, n + 1)[0],
        "price": struct.unpack_from(">f", frame, n + 9)[0],
        "volume": struct.unpack_from(">Q", frame, n + 13)[0],
        "size": struct.unpack_from(">Q", frame, n + 21)[0],
    }


def subscribe(channel: str, **hints) -> dict:
    return {"message_type": 1, "channel": channel, "type": "ltp", **hints}


async def expect_closed(communicator, code: int) -> None:
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": code}


# --- snapshot, updates, unsubscribe --------------------------------------------------------------
async def test_subscribe_answers_the_json_snapshot_then_binary_updates(store, token, aapl):
    engine = await make_engine(store, aapl)
    await engine.process([Tick(aapl.pk, "SIM", now_ms(), 185.5, size=10, prev_close=180.25)])
    communicator = await connect(f"/ws?token={token}")
    await communicator.send_json_to(subscribe("AAPL"))
    assert await receive(communicator) == {
        "message_type": 10,
        "symbol": "AAPL",
        "prev_close": 180.25,
        "ltp": 185.5,
        "open": 185.5,
    }
    ts = now_ms() + 5
    await engine.process([tick(aapl, 186.25, ts=ts, size=7)])
    first = decode(await receive_binary(communicator))
    quote = engine.quotes[aapl.pk]
    assert first == {"symbol": "AAPL", "ts": ts, "price": 186.25, "volume": quote.volume, "size": 0}
    assert quote.volume == 17
    await engine.process([tick(aapl, 186.5, ts=ts + 1, size=5)])
    second = decode(await receive_binary(communicator))
    assert (second["price"], second["volume"], second["size"]) == (186.5, 22, 5)  # size: delta since the last frame
    await engine.process([tick(aapl, 186.0, ts=ts + 2, size=30)])
    assert decode(await receive_binary(communicator))["size"] == 30
    await communicator.disconnect()


async def test_unknown_quote_gives_zeros_not_minus_one_everywhere(store, token, aapl):
    communicator = await connect(f"/ws?token={token}")
    await communicator.send_json_to(subscribe("AAPL", exchange_id=aapl.exchange_id, exchange_code="NASDAQ"))
    assert await receive(communicator) == {"message_type": 10, "symbol": "AAPL", "prev_close": -1, "ltp": 0, "open": 0}
    await communicator.disconnect()


async def test_unsubscribe_answers_info_and_stops_the_frames(store, token, aapl):
    engine = await make_engine(store, aapl)
    communicator = await connect(f"/ws?token={token}")
    await communicator.send_json_to(subscribe("AAPL"))
    assert (await receive(communicator))["message_type"] == 10
    await communicator.send_json_to({"message_type": 2, "channel": "AAPL"})
    assert await receive(communicator) == {"message_type": 100, "message": "Unsubscribed from AAPL"}
    await engine.process([tick(aapl, 190.0)])
    assert await communicator.receive_nothing(timeout=0.3)
    assert quote_group(aapl.pk) not in get_hub().routes
    await communicator.send_json_to({"message_type": 2, "channel": "AAPL"})  # as the seed: INFO again
    assert await receive(communicator) == {"message_type": 100, "message": "Unsubscribed from AAPL"}
    await communicator.disconnect()


async def test_subscriptions_are_counted_per_symbol_string(store, token, aapl):
    """A price widget and a chart on one page each subscribe; one leaving keeps the other's stream."""
    engine = await make_engine(store, aapl)
    communicator = await connect(f"/ws?token={token}")
    for _ in range(2):
        await communicator.send_json_to(subscribe("AAPL"))
        assert (await receive(communicator))["message_type"] == 10
    await communicator.send_json_to({"message_type": 2, "channel": "AAPL"})
    assert (await receive(communicator))["message_type"] == 100
    await engine.process([tick(aapl, 191.0)])
    assert decode(await receive_binary(communicator))["price"] == 191.0
    await communicator.send_json_to({"message_type": 2, "channel": "AAPL"})
    assert (await receive(communicator))["message_type"] == 100
    await engine.process([tick(aapl, 192.0)])
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_each_symbol_string_gets_frames_under_its_own_name(store, token, aapl):
    engine = await make_engine(store, aapl)
    communicator = await connect(f"/ws?token={token}")
    for name in ("AAPL", "NASDAQ:AAPL"):
        await communicator.send_json_to(subscribe(name))
        assert (await receive(communicator))["symbol"] == name
    await engine.process([tick(aapl, 150.0)])
    frames = [decode(await receive_binary(communicator)), decode(await receive_binary(communicator))]
    assert sorted(f["symbol"] for f in frames) == ["AAPL", "NASDAQ:AAPL"]
    assert {f["price"] for f in frames} == {150.0}
    await communicator.disconnect()


# --- symbols and errors ----------------------------------------------------------------------------
async def test_symbol_forms_and_exchange_hints(store, token, reliance_nse, reliance_bse):
    engine = await make_engine(store, reliance_nse, reliance_bse)
    await engine.process([tick(reliance_nse, 2500.0), tick(reliance_bse, 2501.0)])
    communicator = await connect(f"/ws?token={token}")
    cases = [
        (subscribe("RELIANCE", exchange_id=reliance_nse.exchange_id), 2500.0),
        (subscribe("RELIANCE.BSE"), 2501.0),
        (subscribe("NSE:RELIANCE"), 2500.0),
        (subscribe("reliance.nse"), 2500.0),
        (subscribe("RELIANCE.NSE", exchange_code="bse"), None),  # the hint names the exchange: not on BSE
    ]
    for frame, ltp in cases:
        await communicator.send_json_to(frame)
        answer = await receive(communicator)
        if ltp is None:
            assert answer["message_type"] == 101 and answer["channel"] == "RELIANCE.NSE"
        else:
            assert (answer["message_type"], answer["symbol"], answer["ltp"]) == (10, frame["channel"], ltp)
    await engine.process([tick(reliance_bse, 2502.0)])
    assert decode(await receive_binary(communicator)) | {"ts": 0} == {
        "symbol": "RELIANCE.BSE",
        "ts": 0,
        "price": 2502.0,
        "volume": 20,
        "size": 0,
    }
    await communicator.disconnect()


async def test_errors_are_101_and_the_socket_stays_open(store, token, reliance_nse, reliance_bse, aapl):
    communicator = await connect(f"/ws?token={token}")
    await communicator.send_json_to(subscribe("NOPE"))
    unknown = await receive(communicator)
    assert unknown == {"message_type": 101, "message": "Unknown symbol 'NOPE'.", "channel": "NOPE"}
    await communicator.send_json_to(subscribe("RELIANCE"))  # the chart before its instrument loaded
    ambiguous = await receive(communicator)
    assert ambiguous["message_type"] == 101 and "BSE" in ambiguous["message"] and "NSE" in ambiguous["message"]
    bad = [
        '{"message_type": 1}',
        '{"message_type": 1, "channel": 5}',
        '{"message_type": 1, "channel": "A\\u0000B"}',
        '{"message_type": 77}',
        '{"message_type": "subscribe", "channel": "AAPL"}',  # our protocol's frame on a seed socket
        "not json",
    ]
    for text in bad:
        await communicator.send_to(text_data=text)
        error = await receive(communicator)
        assert error["message_type"] == 101 and error["message"], text
    await communicator.send_to(bytes_data=b"\x00")
    assert (await receive(communicator))["message_type"] == 101
    await communicator.send_json_to(subscribe("AAPL"))
    assert (await receive(communicator))["message_type"] == 10
    await communicator.disconnect()


async def test_subscribes_beyond_the_rate_wait_instead_of_being_dropped(store, token, settings, aapl):
    settings.WS_MAX_MESSAGES_PER_SECOND = 5
    communicator = await connect(f"/ws?token={token}")
    for _ in range(9):
        await communicator.send_json_to(subscribe("AAPL"))
    answers = [await receive(communicator) for _ in range(9)]
    assert {a["message_type"] for a in answers} == {10}
    await communicator.disconnect()


# --- negotiation and auth ----------------------------------------------------------------------------
async def test_json_clients_are_untouched_on_the_same_server(store, token, aapl):
    engine = await make_engine(store, aapl)
    ours = await connect(f"/ws?token={token}")
    seed = await connect(f"/ws?token={token}")
    await ours.send_json_to({"message_type": "subscribe", "channel": "AAPL"})
    assert await receive(ours) == {"message_type": "info", "message": "Subscribed to AAPL"}
    await seed.send_json_to(subscribe("AAPL"))
    assert (await receive(seed))["message_type"] == 10
    await engine.process([tick(aapl, 170.0)])
    assert await ours.receive_from(timeout=3) == encode(quote_payload(engine.quotes[aapl.pk], "AAPL", "NASDAQ"))
    assert decode(await receive_binary(seed))["price"] == 170.0
    assert len(get_hub().routes[quote_group(aapl.pk)].members) == 2  # one layer subscription for both
    # a JSON connection stays JSON: an integer message_type later is just an unknown type
    await ours.send_json_to({"message_type": 1, "channel": "AAPL"})
    assert (await receive(ours))["code"] == "unknown_message_type"
    await ours.disconnect()
    await seed.disconnect()


async def test_the_frame_head_is_encoded_once_per_process(store, token, aapl):
    engine = await make_engine(store, aapl)
    clients = [await connect(f"/ws?token={token}") for _ in range(3)]
    for client in clients:
        await client.send_json_to(subscribe("AAPL"))
        assert (await receive(client))["message_type"] == 10
    built = frame_heads.built
    await engine.process([tick(aapl, 171.0)])
    frames = {await receive_binary(client) for client in clients}
    assert len(frames) == 1 and frame_heads.built == built + 1
    for client in clients:
        await client.disconnect()


async def test_an_auth_message_first_then_the_seed_protocol(store, token, aapl):
    communicator = await connect("/ws")
    await communicator.send_json_to({"message_type": "auth", "token": token})
    assert (await receive(communicator))["message"] == "Authenticated"
    await communicator.send_json_to(subscribe("AAPL"))
    assert (await receive(communicator))["message_type"] == 10
    await communicator.disconnect()


async def test_without_a_token_the_seed_socket_is_refused_by_default(store, aapl):
    communicator = await connect("/ws", origin=FRONT_END)
    await communicator.send_json_to(subscribe("AAPL"))
    error = await receive(communicator)
    assert error["message_type"] == 101 and "WS_ALLOW_ANONYMOUS" in error["message"]
    await expect_closed(communicator, 4401)
    await communicator.disconnect()


async def test_anonymous_clients_when_allowed_and_silent_ones_are_not_dropped(store, settings, aapl):
    settings.WS_ALLOW_ANONYMOUS = True
    engine = await make_engine(store, aapl)
    seed = await connect("/ws", origin=FRONT_END)  # the seed front end: no token, no pings
    ours = await connect("/ws")
    await asyncio.sleep(0.7)  # past WS_AUTH_TIMEOUT_S
    await seed.send_json_to(subscribe("AAPL"))
    assert (await receive(seed))["message_type"] == 10
    await ours.send_json_to({"message_type": "subscribe", "channel": "AAPL"})
    assert (await receive(ours))["message"] == "Subscribed to AAPL"
    await asyncio.sleep(0.7)
    await engine.process([tick(aapl, 172.0)])
    assert decode(await receive_binary(seed))["price"] == 172.0
    assert orjson.loads(await ours.receive_from(timeout=3))["close"] == 172.0
    await seed.disconnect()
    await ours.disconnect()


async def test_an_anonymous_json_client_may_still_authenticate(store, settings, token):
    settings.WS_ALLOW_ANONYMOUS = True
    communicator = await connect("/ws")
    await communicator.send_json_to({"message_type": "auth", "token": token})
    assert await receive(communicator) == {"message_type": "info", "message": "Authenticated"}
    await communicator.send_json_to({"message_type": "auth", "token": token})
    assert await receive(communicator) == {"message_type": "info", "message": "Already authenticated"}
    await communicator.disconnect()


async def test_a_foreign_origin_is_still_refused(store, settings):
    settings.WS_ALLOW_ANONYMOUS = True
    communicator = WebsocketCommunicator(application, "/ws", headers=[(b"origin", b"https://evil.example")])
    connected, _ = await communicator.connect(timeout=3)
    assert not connected


# --- the compat route ---------------------------------------------------------------------------------
@pytest.fixture
def compat_application(settings):
    """``marketapp.asgi`` as built with ``SEED_COMPAT=true`` (run afresh, the imported module untouched)."""
    settings.SEED_COMPAT = True
    settings.SEED_COMPAT_PREFIX = "seed/"
    return runpy.run_path(marketapp.asgi.__file__)["application"]


async def test_the_compat_route_serves_the_seed_front_end(store, settings, compat_application, aapl):
    settings.WS_ALLOW_ANONYMOUS = True
    engine = await make_engine(store, aapl)
    communicator = await connect("/seed/ws", app=compat_application, origin=FRONT_END)
    await communicator.send_json_to(subscribe("AAPL"))
    assert (await receive(communicator))["message_type"] == 10
    await engine.process([tick(aapl, 173.0)])
    assert decode(await receive_binary(communicator))["price"] == 173.0
    await communicator.send_json_to({"message_type": 2, "channel": "AAPL"})
    assert (await receive(communicator))["message"] == "Unsubscribed from AAPL"
    await communicator.disconnect()
    plain = await connect("/ws", app=compat_application)  # our route is still there
    await plain.disconnect()


# --- real servers ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_the_seed_front_end_on_a_real_server(kind, monkeypatch, settings, store, aapl):
    """No token, the front end's Origin, ``/seed/ws``: JSON snapshot then binary frames on the wire."""
    from websockets.asyncio.client import connect as ws_connect

    from marketdata.tests.test_ws_server import Server

    monkeypatch.setenv("SEED_COMPAT", "true")
    monkeypatch.setenv("WS_ALLOW_ANONYMOUS", "true")
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", FRONT_END)
    server = await asyncio.to_thread(Server, kind)
    try:
        engine = await make_engine(store, aapl)
        async with asyncio.timeout(20):
            url = f"ws://127.0.0.1:{server.port}/seed/ws"
            async with ws_connect(url, origin=FRONT_END) as ws:
                await ws.send(orjson.dumps(subscribe("AAPL")).decode())
                snapshot = orjson.loads(await ws.recv())
                assert snapshot == {"message_type": 10, "symbol": "AAPL", "prev_close": -1, "ltp": 0, "open": 0}
                await asyncio.sleep(1.2)  # past the server's WS_AUTH_TIMEOUT_S: a silent client stays
                await engine.process([tick(aapl, 188.5)])
                frame = await ws.recv()
                assert isinstance(frame, bytes)
                assert decode(frame) | {"ts": 0} == {"symbol": "AAPL", "ts": 0, "price": 188.5, "volume": 10, "size": 0}
    finally:
        await asyncio.to_thread(server.stop)
