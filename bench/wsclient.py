"""The load generator's WebSocket client: RFC 6455 frames and the connection set-up.

A minimal client, built for ``bench.loadgen``: ``mask_frame`` builds a masked client frame;
``Client`` (an asyncio protocol) does the handshake, sends the ``subscribe`` message and
waits for every ``Subscribed to`` reply; ``open_client`` opens one such connection under a concurrency gate
and timeouts; ``raise_nofile`` lifts the open-files limit for thousands of sockets.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import struct

import orjson

_INFO_SUB = b'"Subscribed to '


def mask_frame(opcode: int, data: bytes) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    if not n:
        return head + mask
    repeated = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


class Client(asyncio.Protocol):
    """One WebSocket connection during set-up: handshake, subscribe, wait for the replies."""

    def __init__(self, index: int, symbols: list[str], host: str, port: int, path: str, errors: list[str]) -> None:
        self.index = index
        self.symbols = symbols
        self.host, self.port, self.path = host, port, path
        self.errors = errors
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = False
        self.subscribed = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during set-up: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self.fail(f"handshake refused: {status!r}")
                return
            del buf[: end + 4]
            self.handshaken = True
            self.transport.write(mask_frame(1, orjson.dumps({"message_type": "subscribe", "channels": self.symbols})))
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if n - pos < head + length:
                break
            opcode = buf[pos] & 0x0F
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if opcode == 1:
                self.on_setup_text(payload)
            elif opcode == 8:
                self.fail(f"closed by server: {payload[:2].hex()} {payload[2:]!r}")
                return
            elif opcode == 9:
                self.transport.write(mask_frame(0xA, payload))
        if pos:
            del buf[:pos]

    def on_setup_text(self, payload: bytes) -> None:
        if _INFO_SUB in payload:
            self.subscribed += 1
            if self.subscribed >= len(self.symbols) and not self.ready.done():
                self.ready.set_result(None)
        elif b'"message_type":"error"' in payload and len(self.errors) < 20:
            self.errors.append(f"client {self.index}: {payload.decode(errors='replace')}")

    def fail(self, reason: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"client {self.index}: {reason}")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()


def raise_nofile() -> None:
    """Allow as many sockets as the hard limit (10,000 idle connections need more than 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def open_client(loop, index: int, symbols, cfg, errors: list[str], gate: asyncio.Semaphore) -> Client | None:
    async with gate:
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Client(index, symbols, cfg["host"], cfg["port"], cfg["path"], errors),
                    cfg["host"],
                    cfg["port"],
                ),
                timeout=cfg.get("connect_timeout", 60),
            )
            await asyncio.wait_for(client.ready, timeout=cfg.get("ready_timeout", 120))
            return client
        except Exception as exc:
            if len(errors) < 20:
                errors.append(f"client {index}: {exc!r}")
            return None
