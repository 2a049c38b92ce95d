"""Request ids and ``LOG_FORMAT=json``: in-process round trips, then real server processes' stderr."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import urllib.error
import urllib.request

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from websockets.asyncio.client import connect

from core.log_format import JsonFormatter
from core.request_id import RequestIdMiddleware, request_id_get
from marketapp.asgi import application
from marketdata.tests.servers import Server
from marketdata.tests.ws_support import access_token


def _header(headers, name: bytes) -> str | None:
    return next((v.decode() for k, v in headers if k.lower() == name), None)


# --- request ids, in process -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"req-42.a_b:c", True),
        (b"0f" * 64, True),  # 128 characters
        (b"0f" * 64 + b"x", False),  # too long
        (b"two words", False),
        (b"x\r\nforged log line", False),
        (b"", False),
        (None, False),
    ],
)
async def test_http_answers_a_well_formed_request_id_or_a_new_one(transactional_db, sent, kept):
    headers = [(b"host", b"localhost"), *([(b"x-request-id", sent)] if sent is not None else [])]
    communicator = HttpCommunicator(application, "GET", "/no/such/path", headers=headers)
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 404
    answered = _header(response["headers"], b"x-request-id")
    if kept:
        assert answered == sent.decode()
    else:
        assert answered and len(answered) == 32 and int(answered, 16) >= 0


class _Echo(AsyncWebsocketConsumer):
    """Sends the request id it sees inside its connection."""

    async def connect(self):
        await self.accept()
        await self.send(text_data=request_id_get() or "none")


async def test_a_websocket_connection_has_its_request_id_in_the_handshake_and_the_consumer(transactional_db):
    communicator = WebsocketCommunicator(
        RequestIdMiddleware(_Echo.as_asgi()), "/ws", headers=[(b"x-request-id", b"ws-1")]
    )
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    assert _header(communicator.response_headers, b"x-request-id") == "ws-1"
    assert await communicator.receive_from() == "ws-1"
    await communicator.disconnect()
    assert request_id_get() is None  # nothing leaks out of the connection


def test_the_json_formatter_writes_one_object_with_the_documented_fields():
    record = logging.LogRecord("marketapp.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    record.status_code = 500  # an extra field
    record.request = object()  # Django's request: its repr carries the query string, left out
    line = JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body.pop("timestamp").endswith("+00:00")
    assert "ValueError: boom" in body.pop("exc_info")
    assert body == {"level": "ERROR", "logger": "marketapp.x", "message": "failed here", "status_code": 500}


def test_an_unknown_log_format_is_a_clear_error(tmp_path):
    from marketapp.tests.test_settings import manage

    result = manage("check", env={"LOG_FORMAT": "xml", "VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "LOG_FORMAT must be text or json, not 'xml'" in result.stderr


# --- real processes ---------------------------------------------------------------------------------
def _get(port: int, path: str, request_id: str) -> tuple[int, str | None]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-Request-ID": request_id})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a fixed http://127.0.0.1 URL
            return response.status, response.headers["X-Request-ID"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["X-Request-ID"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["uvicorn", "runmarket"])
async def test_json_logs_of_a_real_server_carry_request_ids_and_no_token(kind, user):
    server = await asyncio.to_thread(
        Server,
        kind,
        options=["--lifespan", "off", "--log-level", "info"],
        env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"},
        stdout=False,  # every line of the log is one JSON object
    )
    token = await asyncio.to_thread(access_token, user)
    try:
        status, echoed = await asyncio.to_thread(
            _get, server.port, "/no/such/page?token=secret-in-query", "http-json-1"
        )
        assert (status, echoed) == (404, "http-json-1")
        headers = {"X-Request-ID": "ws-json-1"}
        async with connect(f"ws://127.0.0.1:{server.port}/ws?token={token}&x=1", additional_headers=headers) as ws:
            assert ws.response.headers["X-Request-ID"] == "ws-json-1"
            await ws.send('{"message_type": "ping"}')
            assert "pong" in await ws.recv()
        await asyncio.to_thread(server.wait_for, lambda: "[redacted]&x=1" in server.output(), "the WebSocket log line")
        text = server.output()
    finally:
        await asyncio.to_thread(server.stop)

    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line), line
        assert dt.datetime.fromisoformat(line["timestamp"]).utcoffset() == dt.timedelta(0)
    assert token not in text and token.split(".")[2] not in text and "secret-in-query" not in text

    def one(logger: str, needle: str) -> dict:
        found = [line for line in lines if line["logger"] == logger and needle in line["message"]]
        assert found, (logger, needle, lines)
        return found[0]

    assert one("django.request", "Not Found: /no/such/page")["request_id"] == "http-json-1"
    assert one("uvicorn.access", "GET /no/such/page?token=[redacted] HTTP/1.1")["request_id"] == "http-json-1"
    assert one("uvicorn.error", "WebSocket /ws?token=[redacted]&x=1")["request_id"] == "ws-json-1"
    assert all("request_id" not in line for line in lines if "Started server process" in line["message"])
