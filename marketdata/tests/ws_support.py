"""Helpers for the ``/ws`` tests: the Redis channel layer, an engine, tokens, a raw WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator

import orjson
from channels.testing import WebsocketCommunicator
from django.conf import settings

from ingestion.engine import Engine, InstrumentMeta
from marketdata.live.hub import close_hub
from marketdata.live.protocol import ChannelLayerPublisher
from marketdata.live.store.redis import RedisTickStore
from marketdata.live.types import Tick

# Redis pub/sub channels are shared by every database number of a server: a prefix of our
# own keeps other test runs on this machine (and their instrument ids) out of our groups.
LAYER_PREFIX = f"wstest{os.getpid()}"


def redis_url() -> str:
    return settings.REDIS_URL or "redis://127.0.0.1:6379/15"


def redis_layer_settings(url: str, prefix: str = LAYER_PREFIX) -> dict:
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": prefix},
        }
    }


# The communicators' waits only bound a failing test: generous, for a machine busy with other runs.
CONNECT_TIMEOUT_S = 10
RECEIVE_TIMEOUT_S = 5


def use_redis_layer(settings, **overrides) -> None:
    """Point the ``settings`` fixture at the test Redis and its pub/sub layer, then set ``overrides``."""
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    for name, value in overrides.items():
        setattr(settings, name, value)


@contextlib.asynccontextmanager
async def empty_store(**options) -> AsyncIterator[RedisTickStore]:
    """The Redis tick store the consumers read snapshots from, emptied first; hubs closed after."""
    store = RedisTickStore(redis_url(), **options)
    await store.redis.flushdb()
    try:
        yield store
    finally:
        await close_hub()
        await store.redis.flushdb()
        await store.close()


async def connect(path: str = "/ws", headers=None) -> WebsocketCommunicator:
    """A communicator on the real ASGI application, connected (the handshake must succeed)."""
    from marketapp.asgi import application  # on use: the module starts the snapshot publisher

    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=CONNECT_TIMEOUT_S)
    assert connected
    return communicator


async def connect_as(user, query: str = "") -> WebsocketCommunicator:
    """``connect`` with ``user``'s access token in the query string, then ``query``."""
    return await connect(f"/ws?token={access_token(user)}{query}")


async def receive(communicator) -> dict:
    """The next JSON frame."""
    return await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT_S)


def access_token(user) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


def now_ms() -> int:
    return int(time.time() * 1000)


async def make_engine(store: RedisTickStore, *instruments) -> Engine:
    """A real engine over ``store`` publishing through the configured channel layer."""
    engine = Engine(store=store, publisher=ChannelLayerPublisher())
    engine.set_instruments(InstrumentMeta(i.pk, i.symbol, i.exchange.code, i.exchange.timezone) for i in instruments)
    await engine.restore()
    return engine


def tick(instrument, price: float, *, ts: int | None = None, size: int = 10) -> Tick:
    return Tick(instrument_id=instrument.pk, provider="SIM", ts=ts or now_ms(), price=price, size=size)


class RawWebSocket:
    """A minimal WebSocket client over a bare socket, so a test controls exactly when it reads.

    ``rcvbuf`` shrinks the kernel receive buffer, so a client that stops reading pushes back
    on the server quickly instead of after megabytes.
    """

    def __init__(self, host: str, port: int, path: str, *, rcvbuf: int | None = None) -> None:
        self.host, self.port, self.path, self.rcvbuf = host, port, path, rcvbuf
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.received_bytes = 0

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, (self.host, self.port))
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))

    async def send_json(self, data) -> None:
        payload = orjson.dumps(data)
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await asyncio.get_running_loop().sock_sendall(self.sock, header + mask + masked)

    async def _fill(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        while len(self.buffer) < n:
            chunk = await loop.sock_recv(self.sock, 65536)
            if not chunk:
                raise EOFError
            self.received_bytes += len(chunk)
            self.buffer += chunk

    async def _take(self, n: int) -> bytes:
        await self._fill(n)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    async def recv_frame(self) -> tuple[int, bytes]:
        """``(opcode, payload)`` of the next frame; raises EOFError when the socket ends."""
        b0, b1 = await self._take(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._take(8))
        return b0 & 0x0F, await self._take(n)

    async def recv_json(self) -> dict:
        while True:
            opcode, payload = await self.recv_frame()
            if opcode == 0x1:
                return orjson.loads(payload)
            if opcode == 0x8:
                raise EOFError(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
