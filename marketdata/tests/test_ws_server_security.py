"""``/ws`` hardening that needs a real server process: the transport's frame limit and the access log."""

from __future__ import annotations

import asyncio
import struct

import pytest
from websockets.asyncio.client import connect

from marketdata.tests.servers import Server
from marketdata.tests.ws_support import RawWebSocket, access_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def _big_frame_close_code(port: int, size: int) -> int | None:
    """Send one ``size``-byte text frame on an unauthenticated socket; the close code the server answers."""
    ws = RawWebSocket("127.0.0.1", port, "/ws")
    await ws.connect()
    try:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size) + b"\0\0\0\0"
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(ws.sock, header)
        sent = 0
        chunk = b" " * 65536
        try:
            while sent < size:
                await loop.sock_sendall(ws.sock, chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed on us mid-frame: the point
        async with asyncio.timeout(10):
            while True:
                try:
                    opcode, payload = await ws.recv_frame()
                except (EOFError, OSError):
                    return None
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    finally:
        ws.close()


async def test_runmarket_limits_the_transport_frame_size(transactional_db):
    server = await asyncio.to_thread(Server, "runmarket")
    try:
        # 1 MiB > WS_MAX_FRAME_BYTES (64 KiB): uvicorn itself refuses it (1009) before buffering it.
        assert await _big_frame_close_code(server.port, 1024 * 1024) == 1009
    finally:
        await asyncio.to_thread(server.stop)


async def test_uvicorn_does_not_log_the_query_token(user):
    server = await asyncio.to_thread(
        Server,
        "uvicorn",
        options=["--lifespan", "off", "--log-level", "info"],
        settings_module="marketdata.tests.ws_log_settings",
    )
    port = server.port
    token = await asyncio.to_thread(access_token, user)
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws?token={token}&x=1") as ws:
            await ws.send('{"message_type": "ping"}')
            assert "pong" in await ws.recv()
        async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["marketapp", f"bearer.{token}"]) as ws:
            assert ws.subprotocol == "marketapp"
            await ws.send('{"message_type": "ping"}')
            assert "pong" in await ws.recv()
        await asyncio.sleep(0.5)
        log = server.output()
        assert "WebSocket /ws?token=[redacted]&x=1" in log
        assert token not in log and token.split(".")[2] not in log
    finally:
        await asyncio.to_thread(server.stop)
