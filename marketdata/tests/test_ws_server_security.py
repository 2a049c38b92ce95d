"""``/ws`` hardening that needs a real server process: the transport's frame limit and the access log."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from marketdata.tests.test_ws_server import BASE_DIR, _database_url, _free_port
from marketdata.tests.ws_support import LAYER_PREFIX, RawWebSocket, access_token, redis_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class Proc:
    def __init__(self, cmd: list[str], port: int, settings_module: str) -> None:
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="ws-sec-", suffix=".log", delete=False)  # noqa: SIM115
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": redis_url(),
            "WS_TEST_LAYER_PREFIX": LAYER_PREFIX,
        }
        self.proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited: {self.output()}")
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"did not start: {self.output()}") from None
                time.sleep(0.2)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


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
    port = _free_port()
    cmd = [sys.executable, "manage.py", "runmarket", "--port", str(port)]
    server = await asyncio.to_thread(Proc, cmd, port, "marketdata.tests.ws_server_settings")
    try:
        # 1 MiB > WS_MAX_FRAME_BYTES (64 KiB): uvicorn itself refuses it (1009) before buffering it.
        assert await _big_frame_close_code(port, 1024 * 1024) == 1009
    finally:
        await asyncio.to_thread(server.stop)


async def test_uvicorn_does_not_log_the_query_token(user):
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", "marketapp.asgi:application", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--lifespan", "off", "--log-level", "info"]
    server = await asyncio.to_thread(Proc, cmd, port, "marketdata.tests.ws_log_settings")
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
