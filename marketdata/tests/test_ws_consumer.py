"""``/ws`` through the real ASGI application, the Redis pub/sub channel layer and a real engine."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson
import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from instruments.tests.factories import InstrumentFactory
from marketapp.asgi import application
from marketdata.live.hub import close_hub, get_hub
from marketdata.live.protocol import encode, quote_group, quote_payload
from marketdata.live.types import MINUTE_MS
from marketdata.tests.ws_support import (
    access_token,
    connect,
    empty_store,
    make_engine,
    now_ms,
    receive,
    tick,
    use_redis_layer,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def redis_layer(settings):
    use_redis_layer(settings, WS_AUTH_TIMEOUT_S=0.5)


@pytest.fixture
async def store():
    async with empty_store() as store:
        yield store


@pytest.fixture
def token(user):
    return access_token(user)


async def authed(token) -> WebsocketCommunicator:
    return await connect(f"/ws?token={token}")


async def expect_closed(communicator, code: int) -> None:
    output = await communicator.receive_output(timeout=3)
    assert output == {"type": "websocket.close", "code": code}


async def ping_pongs(communicator) -> None:
    await communicator.send_json_to({"message_type": "ping"})
    assert await receive(communicator) == {"message_type": "pong"}


# --- authentication -----------------------------------------------------------------------------
async def test_without_credentials_the_auth_window_closes_with_4401(store):
    communicator = await connect()
    error = await receive(communicator)
    assert error["message_type"] == "error" and error["code"] == "auth_required"
    assert "0.5 s" in error["message"]
    await expect_closed(communicator, 4401)
    await communicator.disconnect()


def _expired(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=dt.timedelta(seconds=-1))
    return str(token)


BAD_TOKENS = {
    "garbage": (lambda user: "not-a-jwt", "Token is invalid"),
    "refresh": (lambda user: str(RefreshToken.for_user(user)), "Token has wrong type"),
    "expired": (_expired, "Token is expired"),
}


@pytest.fixture(params=list(BAD_TOKENS))
def bad_token(request, user):
    make, reason = BAD_TOKENS[request.param]
    return make(user), reason


async def test_a_bad_token_is_refused_with_the_reason(store, bad_token):
    token, reason = bad_token
    communicator = await connect(f"/ws?token={token}")
    error = await receive(communicator)
    assert error["code"] == "auth_required" and reason in error["message"]
    await expect_closed(communicator, 4401)
    await communicator.disconnect()


async def test_a_token_of_an_inactive_user_is_refused(store, user, token):
    user.is_active = False
    await asyncio.to_thread(user.save)
    communicator = await authed(token)
    assert (await receive(communicator))["code"] == "auth_required"
    await expect_closed(communicator, 4401)
    await communicator.disconnect()


async def test_an_auth_message_inside_the_window_authenticates(store, token):
    communicator = await connect()
    await communicator.send_json_to({"message_type": "auth", "token": token})
    assert await receive(communicator) == {"message_type": "info", "message": "Authenticated"}
    await asyncio.sleep(0.6)  # past the auth window: still open
    await ping_pongs(communicator)
    await communicator.disconnect()


async def test_anything_but_auth_first_closes_with_4401(store, token):
    communicator = await connect()
    await communicator.send_json_to({"message_type": "subscribe", "channel": "AAPL"})
    error = await receive(communicator)
    assert error["code"] == "auth_required" and "auth" in error["message"]
    await expect_closed(communicator, 4401)
    await communicator.disconnect()


async def test_an_invalid_auth_message_token_closes_with_4401(store):
    communicator = await connect()
    await communicator.send_json_to({"message_type": "auth", "token": "nope"})
    error = await receive(communicator)
    assert error["code"] == "auth_required" and "Token is invalid" in error["message"]
    await expect_closed(communicator, 4401)
    await communicator.disconnect()


@pytest.fixture
def session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def test_the_session_cookie_authenticates_a_browser(store, session_cookie):
    headers = [(b"cookie", f"sessionid={session_cookie}".encode()), (b"origin", b"http://localhost:8000")]
    communicator = await connect(headers=headers)
    await ping_pongs(communicator)
    await communicator.disconnect()


async def test_a_foreign_origin_is_refused(store, token):
    communicator = WebsocketCommunicator(
        application, f"/ws?token={token}", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect(timeout=3)
    assert not connected


# --- subscriptions and live data -----------------------------------------------------------------
async def test_subscribe_gives_info_a_snapshot_then_the_engines_text_as_is(store, token, aapl):
    engine = await make_engine(store, aapl)
    await engine.process([tick(aapl, 185.5)])
    communicator = await authed(token)
    await communicator.send_json_to({"message_type": "subscribe", "channel": "AAPL"})
    assert await receive(communicator) == {"message_type": "info", "message": "Subscribed to AAPL"}
    snapshot = await receive(communicator)
    expected = orjson.loads(encode(quote_payload(engine.quotes[aapl.pk], "AAPL", "NASDAQ", "snapshot")))
    assert snapshot == expected
    assert snapshot["close"] == 185.5 and snapshot["seq"] == 1

    await engine.process([tick(aapl, 186.25)])
    raw = await communicator.receive_from(timeout=3)
    assert raw == encode(quote_payload(engine.quotes[aapl.pk], "AAPL", "NASDAQ"))  # forwarded byte for byte
    data = orjson.loads(raw)
    assert data["message_type"] == "data" and data["close"] == 186.25 and data["seq"] == 2
    await communicator.disconnect()


async def test_no_snapshot_for_an_instrument_without_a_quote(store, token, aapl):
    communicator = await authed(token)
    await communicator.send_json_to({"message_type": "subscribe", "channels": ["NASDAQ:AAPL"]})
    assert await receive(communicator) == {"message_type": "info", "message": "Subscribed to NASDAQ:AAPL"}
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_one_minute_bars_stream_on_the_at_1m_channel(store, token, aapl):
    engine = await make_engine(store, aapl)
    communicator = await authed(token)
    await communicator.send_json_to({"message_type": "subscribe", "channel": "AAPL@1m"})
    assert await receive(communicator) == {"message_type": "info", "message": "Subscribed to AAPL@1m"}
    minute = now_ms() // MINUTE_MS * MINUTE_MS
    await engine.process([tick(aapl, 100.0, ts=minute + 1_000, size=5)])
    bar = await receive(communicator)
    assert bar["message_type"] == "bar" and bar["symbol"] == "AAPL" and bar["interval"] == "1m"
    assert (bar["open"], bar["close"], bar["volume"], bar["closed"]) == (100.0, 100.0, 5, False)
    # The next minute's first tick closes the bar: both the closed bar and the new one arrive.
    await engine.process([tick(aapl, 101.0, ts=minute + 2_000, size=1), tick(aapl, 102.0, ts=minute + MINUTE_MS)])
    bars = [await receive(communicator), await receive(communicator)]
    by_closed = {b["closed"]: b for b in bars}
    assert by_closed[True]["close"] == 101.0 and by_closed[True]["volume"] == 6
    assert by_closed[False]["open"] == 102.0
    await communicator.disconnect()


async def test_unsubscribe_stops_the_updates(store, token, aapl):
    engine = await make_engine(store, aapl)
    communicator = await authed(token)
    await communicator.send_json_to({"message_type": "subscribe", "channel": "AAPL"})
    assert (await receive(communicator))["message"] == "Subscribed to AAPL"
    await communicator.send_json_to({"message_type": "unsubscribe", "channel": "AAPL"})
    assert await receive(communicator) == {"message_type": "info", "message": "Unsubscribed from AAPL"}
    await engine.process([tick(aapl, 190.0)])
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.send_json_to({"message_type": "unsubscribe", "channel": "AAPL"})
    error = await receive(communicator)
    assert error["code"] == "not_subscribed" and error["channel"] == "AAPL"
    await communicator.disconnect()


async def test_ambiguous_and_unknown_symbols(store, token, reliance_nse, reliance_bse):
    communicator = await authed(token)
    await communicator.send_json_to({"message_type": "subscribe", "channels": ["RELIANCE", "NOPE", "NSE:RELIANCE"]})
    ambiguous = await receive(communicator)
    assert ambiguous["code"] == "ambiguous_symbol" and ambiguous["channel"] == "RELIANCE"
    assert "BSE" in ambiguous["message"] and "NSE" in ambiguous["message"]
    unknown = await receive(communicator)
    assert unknown["code"] == "unknown_symbol" and unknown["channel"] == "NOPE"
    assert await receive(communicator) == {"message_type": "info", "message": "Subscribed to NSE:RELIANCE"}
    await communicator.disconnect()


async def test_one_group_membership_per_process_however_many_connections(store, token, aapl):
    engine = await make_engine(store, aapl)
    first, second = await authed(token), await authed(token)
    for communicator in (first, second):
        await communicator.send_json_to({"message_type": "subscribe", "channel": "AAPL"})
        assert (await receive(communicator))["message_type"] == "info"
    hub = get_hub()
    group = quote_group(aapl.pk)
    assert len(hub.routes[group].members) == 2
    layer_channel = f"{hub.layer.prefix}__group__{group}"
    assert dict(await store.redis.pubsub_numsub(layer_channel)) == {layer_channel.encode(): 1}

    await engine.process([tick(aapl, 150.0)])
    assert (await receive(first))["close"] == 150.0
    assert (await receive(second))["close"] == 150.0

    await first.disconnect()
    assert len(hub.routes[group].members) == 1
    await second.send_json_to({"message_type": "unsubscribe", "channel": "AAPL"})
    assert (await receive(second))["message"] == "Unsubscribed from AAPL"
    assert group not in hub.routes
    for _ in range(50):  # leaving the layer group happens in the background
        if dict(await store.redis.pubsub_numsub(layer_channel)) == {layer_channel.encode(): 0}:
            break
        await asyncio.sleep(0.02)
    assert dict(await store.redis.pubsub_numsub(layer_channel)) == {layer_channel.encode(): 0}
    await second.disconnect()


# --- bad frames and limits -------------------------------------------------------------------------
async def test_every_bad_frame_gets_its_error_and_the_connection_stays_open(store, token, aapl, settings):
    settings.WS_MAX_FRAME_BYTES = 200
    communicator = await authed(token)
    cases = [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"message_type": "dance"}', "unknown_message_type"),
        ('{"channel": "AAPL"}', "unknown_message_type"),
        ('{"message_type": "subscribe"}', "missing_channel"),
        ('{"message_type": "subscribe", "channels": []}', "missing_channel"),
        ('{"message_type": "subscribe", "channels": "AAPL"}', "invalid_channel"),
        ('{"message_type": "subscribe", "channel": 42}', "invalid_channel"),
        ('{"message_type": "subscribe", "channel": "AAPL@5m"}', "unsupported_interval"),
        ('{"message_type": "unsubscribe", "channel": "AAPL"}', "not_subscribed"),
        ('{"message_type": "subscribe", "channel": "' + "A" * 300 + '"}', "frame_too_large"),
    ]
    for frame, code in cases:
        await communicator.send_to(text_data=frame)
        error = await receive(communicator)
        assert (error["message_type"], error["code"]) == ("error", code), frame
        assert error["message"]
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await receive(communicator))["code"] == "binary_not_supported"
    await ping_pongs(communicator)
    await communicator.disconnect()


async def test_the_subscription_limit(store, token, settings, nasdaq):
    settings.WS_MAX_SUBSCRIPTIONS = 2
    for symbol in ("AAA", "BBB", "CCC"):
        await asyncio.to_thread(InstrumentFactory, symbol=symbol, exchange=nasdaq)
    communicator = await authed(token)
    await communicator.send_json_to({"message_type": "subscribe", "channels": ["AAA", "BBB", "CCC"]})
    error = await receive(communicator)  # more names than a connection may hold: nothing subscribed
    assert error["code"] == "too_many_subscriptions" and "channel" not in error
    await communicator.send_json_to({"message_type": "subscribe", "channels": ["AAA", "BBB"]})
    assert (await receive(communicator))["message"] == "Subscribed to AAA"
    assert (await receive(communicator))["message"] == "Subscribed to BBB"
    await communicator.send_json_to({"message_type": "subscribe", "channels": ["AAA", "CCC"]})
    assert (await receive(communicator))["message"] == "Subscribed to AAA"  # already held: no new slot
    error = await receive(communicator)
    assert error["code"] == "too_many_subscriptions" and error["channel"] == "CCC"
    await communicator.send_json_to({"message_type": "unsubscribe", "channel": "AAA"})
    assert (await receive(communicator))["message"] == "Unsubscribed from AAA"
    await communicator.send_json_to({"message_type": "subscribe", "channel": "CCC"})
    assert (await receive(communicator))["message"] == "Subscribed to CCC"
    await communicator.disconnect()


async def test_the_rate_limit_drops_frames_beyond_it_then_recovers(store, token, settings):
    settings.WS_MAX_MESSAGES_PER_SECOND = 5
    communicator = await authed(token)
    for _ in range(20):
        await communicator.send_json_to({"message_type": "ping"})
    replies = []
    while not await communicator.receive_nothing(timeout=0.2):
        replies.append(await receive(communicator))
    pongs = [r for r in replies if r["message_type"] == "pong"]
    errors = [r for r in replies if r["message_type"] == "error"]
    assert 5 <= len(pongs) <= 7  # the burst, plus what refilled while the frames went in
    assert [e["code"] for e in errors] == ["rate_limited"]  # one error, not one per dropped frame
    await asyncio.sleep(1.0)
    await ping_pongs(communicator)
    await communicator.disconnect()


async def test_the_embedded_mode_in_memory_layer_and_memory_store(settings, token, aapl, monkeypatch):
    import marketdata.live.store
    from marketdata.live.store import get_tick_store

    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(marketdata.live.store, "_memory_store", None)
    engine = await make_engine(get_tick_store(), aapl)
    minute = now_ms() // MINUTE_MS * MINUTE_MS  # both ticks in one minute: one open bar, no close
    await engine.process([tick(aapl, 50.0, ts=minute + 1_000)])
    try:
        communicator = await authed(token)
        await communicator.send_json_to({"message_type": "subscribe", "channels": ["AAPL", "AAPL@1m"]})
        assert (await receive(communicator))["message"] == "Subscribed to AAPL"
        assert (await receive(communicator))["message"] == "Subscribed to AAPL@1m"
        snapshot = await receive(communicator)
        assert (snapshot["message_type"], snapshot["close"]) == ("snapshot", 50.0)
        await engine.process([tick(aapl, 51.0, ts=minute + 2_000)])
        updates = {m["message_type"]: m for m in [await receive(communicator), await receive(communicator)]}
        assert updates["data"]["close"] == 51.0 and updates["data"]["seq"] == 2
        assert updates["bar"]["close"] == 51.0
        await communicator.disconnect()
    finally:
        await close_hub()
