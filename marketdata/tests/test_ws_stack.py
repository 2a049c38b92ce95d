"""The ``/ws`` ASGI stack keeps one scope per connection and refuses unknown paths.

Every middleware in front of the consumer stays suspended for the life of a connection, with
whatever it copied: the stack updates the server's own scope in place (one dict per
connection) and the dispatchers keep no frame of their own (README, Performance: memory per
connection). Through the real ASGI application.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from core.request_id import SendWithId
from marketapp.asgi import application
from marketdata.live.outbox import raw_send
from marketdata.tests.ws_support import access_token, connect, empty_store, receive, use_redis_layer
from marketdata.ws_middleware import SCOPE_BACKLOG, SCOPE_RAW_SEND, SCOPE_SUBPROTOCOL

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def redis_layer(settings):
    use_redis_layer(settings)
    async with empty_store():
        yield


async def ping_pongs(communicator) -> None:
    await communicator.send_json_to({"message_type": "ping"})
    assert await receive(communicator) == {"message_type": "pong"}


async def test_a_token_connection_is_served_on_the_servers_own_scope(user):
    communicator = WebsocketCommunicator(
        application, "/ws", subprotocols=["marketapp", f"bearer.{await sync_to_async(access_token)(user)}"]
    )
    connected, subprotocol = await communicator.connect(timeout=3)
    assert connected and subprotocol == "marketapp"
    await ping_pongs(communicator)

    scope = communicator.scope  # the dict the "server" passed: the stack filled it, not a copy
    assert scope["user"].pk == user.pk
    assert scope[SCOPE_SUBPROTOCOL] == "marketapp"
    assert SCOPE_BACKLOG in scope and SCOPE_RAW_SEND in scope
    assert "url_route" not in scope  # no router copy either
    await communicator.disconnect()


async def test_a_session_connection_is_authenticated_through_the_session_middleware(user):
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = client.cookies["sessionid"].value
    communicator = await connect(headers=[(b"cookie", f"sessionid={cookie}".encode())])
    await ping_pongs(communicator)  # a session user needs no auth message
    assert SCOPE_RAW_SEND in communicator.scope  # noted before the session middleware copied it
    await communicator.disconnect()


@pytest.mark.parametrize("path", ["/nope", "/ws/extra", "/wsx", "/api/ws"])
async def test_an_unknown_websocket_path_is_refused_before_the_handshake(user, path):
    communicator = WebsocketCommunicator(application, f"{path}?token={await sync_to_async(access_token)(user)}")
    connected, _ = await communicator.connect(timeout=3)
    assert not connected
    await communicator.disconnect()


@pytest.mark.parametrize("path", ["/ws", "/ws/"])
async def test_the_feed_answers_with_and_without_the_trailing_slash(user, path):
    communicator = await connect(f"{path}?token={await sync_to_async(access_token)(user)}")
    await ping_pongs(communicator)
    await communicator.disconnect()


async def test_the_request_id_send_wrapper_adds_its_header_and_leaves_the_servers_send_reachable():
    sent: list[dict] = []

    async def server_send(message: dict) -> None:
        sent.append(message)

    send = SendWithId(server_send, (b"x-request-id", b"abc"))
    assert raw_send(send) is server_send
    await send({"type": "websocket.accept", "subprotocol": None})
    await send({"type": "websocket.send", "text": "{}"})
    assert sent[0]["headers"] == [(b"x-request-id", b"abc")]
    assert "headers" not in sent[1]
