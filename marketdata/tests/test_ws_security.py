"""``/ws`` hardening (issue 15): re-checked users, renewable tokens, cheap subscribes, strict origins,
the subprotocol token, stable error codes. Through the real ASGI application and Redis layer."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from instruments.tests.factories import InstrumentFactory
from marketapp.asgi import application
from marketdata.live.hub import close_hub
from marketdata.live.store.redis import RedisTickStore
from marketdata.tests.ws_support import access_token, redis_layer_settings, redis_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def redis_layer(settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    settings.WS_AUTH_TIMEOUT_S = 0.5
    settings.WS_AUTH_RECHECK_S = 0.2


@pytest.fixture
async def store():
    store = RedisTickStore(redis_url())
    await store.redis.flushdb()
    yield store
    await close_hub()
    await store.redis.flushdb()
    await store.close()


def _token(user, seconds: float) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=dt.timedelta(seconds=seconds))
    return str(token)


async def connect(path="/ws", headers=None, subprotocols=None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    return communicator


async def receive(communicator, wait=3) -> dict:
    return await communicator.receive_json_from(timeout=wait)


async def ping_pongs(communicator) -> None:
    await communicator.send_json_to({"message_type": "ping"})
    assert await receive(communicator) == {"message_type": "pong"}


async def closed_with(communicator, code: int, reason: str, *, within: float) -> dict:
    """The error frame and the close that end the socket within ``within`` seconds."""
    error = await receive(communicator, wait=within)
    assert error["message_type"] == "error" and error["code"] == reason, error
    close = await communicator.receive_output(timeout=1)
    assert close["type"] == "websocket.close" and close["code"] == code and close.get("reason") == reason
    return error


# --- (a) an open socket re-checks its user ------------------------------------------------------
async def test_deactivating_the_user_closes_the_socket_with_4403(store, user):
    communicator = await connect(f"/ws?token={access_token(user)}")
    await ping_pongs(communicator)
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    started = time.monotonic()
    await closed_with(communicator, 4403, "account_inactive", within=3)
    assert time.monotonic() - started < 3
    await communicator.disconnect()


async def test_rejecting_the_user_closes_the_socket_with_4403(store, user):
    communicator = await connect(f"/ws?token={access_token(user)}")
    await ping_pongs(communicator)
    await User.objects.filter(pk=user.pk).aupdate(status=User.Status.REJECTED)
    await closed_with(communicator, 4403, "account_rejected", within=3)
    await communicator.disconnect()


async def test_revoking_the_users_tokens_closes_the_socket_with_4401(store, user):
    """A password change or ``POST /auth/logout-all`` raises the user's token_version: the open
    socket authenticated with an older token ends too, not only new connections."""
    communicator = await connect(f"/ws?token={access_token(user)}")
    await ping_pongs(communicator)
    await User.objects.filter(pk=user.pk).aupdate(token_version=user.token_version + 1)
    await closed_with(communicator, 4401, "token_revoked", within=3)
    await communicator.disconnect()


async def test_a_session_user_deactivated_is_closed_too(store, user):
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = client.cookies["sessionid"].value
    communicator = await connect(headers=[(b"cookie", f"sessionid={cookie}".encode())])
    await ping_pongs(communicator)
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    await closed_with(communicator, 4403, "account_inactive", within=3)
    await communicator.disconnect()


async def test_an_expiring_token_closes_the_socket_with_4401(store, user):
    communicator = await connect(f"/ws?token={_token(user, 2)}")
    await ping_pongs(communicator)
    await closed_with(communicator, 4401, "token_expired", within=5)
    await communicator.disconnect()


async def test_an_auth_message_with_a_fresh_token_renews(store, user):
    communicator = await connect(f"/ws?token={_token(user, 2)}")
    await communicator.send_json_to({"message_type": "auth", "token": _token(user, 60)})
    assert await receive(communicator) == {"message_type": "info", "message": "Token renewed"}
    await asyncio.sleep(3.5)  # past the first token's expiry
    await ping_pongs(communicator)
    await communicator.disconnect()


async def test_a_renewal_for_another_user_is_refused_and_changes_nothing(store, user, admin_user):
    other = admin_user
    communicator = await connect(f"/ws?token={access_token(user)}")
    await communicator.send_json_to({"message_type": "auth", "token": access_token(other)})
    error = await receive(communicator)
    assert error["code"] == "token_user_mismatch"
    await ping_pongs(communicator)
    await communicator.disconnect()


# --- (b) one user's subscribes cannot stall the others -----------------------------------------
async def test_more_names_than_allowed_in_one_frame_is_an_error(store, user, settings):
    settings.WS_MAX_NAMES_PER_FRAME = 100
    communicator = await connect(f"/ws?token={access_token(user)}")
    await communicator.send_json_to({"message_type": "subscribe", "channels": [f"X{i}" for i in range(101)]})
    error = await receive(communicator)
    assert error["code"] == "too_many_names"
    await ping_pongs(communicator)
    await communicator.disconnect()


def test_a_frames_names_resolve_in_one_query(django_assert_num_queries, nasdaq, nse, bse):
    from marketdata.live.hub.resolver import LiveInstrument, ResolveError, resolve_symbols

    aapl = InstrumentFactory(symbol="AAPL", exchange=nasdaq)
    InstrumentFactory(symbol="RELIANCE", exchange=nse)
    InstrumentFactory(symbol="RELIANCE", exchange=bse)
    tata = InstrumentFactory(symbol="TATA", exchange=nse)
    names = ["AAPL", "aapl", "NSE:RELIANCE", "nse:tata", "RELIANCE", *[f"NOPE{i}" for i in range(50)], "A\x00B"]
    with django_assert_num_queries(1):
        found = resolve_symbols(names)
    assert found["AAPL"] == found["aapl"] == LiveInstrument(aapl.pk, "AAPL", "NASDAQ")
    assert found["nse:tata"] == LiveInstrument(tata.pk, "TATA", "NSE")
    assert found["NSE:RELIANCE"].exchange == "NSE"
    assert found["RELIANCE"].code == "ambiguous_symbol" and "BSE, NSE" in found["RELIANCE"].message
    assert isinstance(found["NOPE7"], ResolveError) and found["NOPE7"].code == "unknown_symbol"
    assert found["A\x00B"].code == "unknown_symbol"


async def test_unknown_names_are_charged_against_the_rate_limit(store, user, settings):
    settings.WS_MAX_MESSAGES_PER_SECOND = 10
    communicator = await connect(f"/ws?token={access_token(user)}")
    await communicator.send_json_to({"message_type": "subscribe", "channels": [f"NOPE{i}" for i in range(30)]})
    for _ in range(30):
        assert (await receive(communicator))["code"] == "unknown_symbol"
    await communicator.send_json_to({"message_type": "ping"})
    assert (await receive(communicator))["code"] == "rate_limited"
    await communicator.disconnect()


async def test_a_token_handshake_does_not_wait_for_the_shared_sync_thread(store, user):
    token = access_token(user)
    blocker = asyncio.ensure_future(sync_to_async(time.sleep, thread_sensitive=True)(3))
    await asyncio.sleep(0.05)
    try:
        started = time.monotonic()
        communicator = await connect(f"/ws?token={token}")
        await ping_pongs(communicator)
        assert time.monotonic() - started < 1.5
        await communicator.disconnect()
    finally:
        await blocker


# --- (c) the Origin check compares scheme, host and port -----------------------------------------
@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://localhost:8000", True),
        ("http://localhost:9999", False),
        ("https://localhost:8000", False),
        ("http://127.0.0.1:8000", False),
        ("http://app.example:3000", True),
        ("https://app.example:3000", False),
        ("http://app.example:3001", False),
        ("https://x.regex.example", True),
        ("http://x.regex.example", False),
    ],
)
async def test_the_origin_must_match_scheme_host_and_port(store, user, settings, origin, ok):
    settings.CORS_ALLOWED_ORIGINS = ["http://app.example:3000"]
    settings.CORS_ALLOWED_ORIGIN_REGEXES = [r"^https://\w+\.regex\.example$"]
    headers = [(b"host", b"localhost:8000"), (b"origin", origin.encode())]
    communicator = WebsocketCommunicator(application, f"/ws?token={access_token(user)}", headers=headers)
    connected, _ = await communicator.connect(timeout=3)
    assert connected is ok
    await communicator.disconnect()


async def test_behind_a_tls_proxy_the_https_origin_matches(store, user, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    headers = [(b"host", b"markets.example"), (b"origin", b"https://markets.example"), (b"x-forwarded-proto", b"https")]
    settings.ALLOWED_HOSTS = ["markets.example"]
    communicator = WebsocketCommunicator(application, f"/ws?token={access_token(user)}", headers=headers)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    await communicator.disconnect()


# --- (d) the token in the subprotocol, and redacted logs -------------------------------------------
async def test_the_token_may_come_in_the_subprotocol(store, user):
    communicator = WebsocketCommunicator(application, "/ws", subprotocols=["marketapp", f"bearer.{access_token(user)}"])
    connected, subprotocol = await communicator.connect(timeout=3)
    assert connected and subprotocol == "marketapp"
    await ping_pongs(communicator)
    await communicator.disconnect()


async def test_a_bad_subprotocol_token_is_refused(store):
    communicator = await connect(subprotocols=["marketapp", "bearer.nope"])
    error = await receive(communicator)
    assert error["code"] == "auth_required" and error["reason"] == "token_invalid"
    await communicator.disconnect()


def test_the_log_filter_redacts_tokens():
    from marketdata.ws_logging import RedactTokenFilter

    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws?a=1&token=eyJ.abc.def&b=2"),
        None,
    )
    assert RedactTokenFilter().filter(record)
    text = record.getMessage()
    assert "eyJ" not in text and "token=[redacted]" in text and "a=1" in text and "b=2" in text


# --- (e) stable error codes, no Python reprs -------------------------------------------------------
async def test_errors_carry_stable_codes_not_reprs(store, user):
    communicator = await connect(f"/ws?token={access_token(user)}")
    await communicator.send_json_to({"message_type": {"x": [1]}})
    error = await receive(communicator)
    assert error == {
        "message_type": "error",
        "code": "unknown_message_type",
        "message": "Unknown message_type; use subscribe, unsubscribe, ping, options or auth.",
    }
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("make", "change", "reason"),
    [
        (lambda u: "garbage", {}, "token_invalid"),
        (lambda u: _token(u, -5), {}, "token_expired"),
        (access_token, {"is_active": False}, "account_inactive"),
        (access_token, {"status": User.Status.PENDING}, "account_pending"),
    ],
)
async def test_auth_failures_name_a_stable_reason(store, user, make, change, reason):
    token = make(user)
    if change:
        await User.objects.filter(pk=user.pk).aupdate(**change)
    communicator = await connect(f"/ws?token={token}")
    error = await receive(communicator)
    assert error["code"] == "auth_required" and error["reason"] == reason
    assert "{" not in error["message"] and "ErrorDetail" not in error["message"]
    await communicator.disconnect()
