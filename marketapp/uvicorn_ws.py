"""uvicorn's WebSocket protocol (websockets, sans-I/O), lighter per connection and per frame.

Selected with ``uvicorn --ws marketapp.uvicorn_ws:WebSocketProtocol`` (uvicorn takes an import
string there), and by ``manage.py runmarket``. Everything else is uvicorn's own class:

- A text frame on an open connection with no extension negotiated (no permessage-deflate)
  is framed here (a 2-10 byte header before the payload) instead of through websockets'
  ``Frame`` objects, checks and extension loop. Anything else (binary, close, a compressed
  connection, a connection not open) goes through uvicorn's path.
- The handshake's ``Request`` and ``Response`` are dropped once the connection is accepted
  (uvicorn keeps both for the connection's life), and the receive queue and the writable
  flag are small slotted objects instead of an ``asyncio.Queue`` (three deques and an event)
  and an ``asyncio.Event``. Tens of thousands of mostly idle dashboards each keep these.

Back-pressure is unchanged: a send waits while the transport is above its high-water mark
(``pause_writing``), and returns at once otherwise, as uvicorn's does.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import OPEN

from marketdata.live.outbox import WRITE_TEXT_EXTENSION

_LEN16 = struct.Struct("!BBH").pack
_LEN64 = struct.Struct("!BBQ").pack
_FIN_TEXT = 0x81


def text_frame(data: bytes) -> bytes:
    """An unmasked, final text frame (server to client, RFC 6455 section 5.2)."""
    n = len(data)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + data
    if n < 65536:
        return _LEN16(_FIN_TEXT, 126, n) + data
    return _LEN64(_FIN_TEXT, 127, n) + data


class _LastFrame:
    """The frame of the last text framed, by identity: the hub offers one ``str`` object to every
    subscriber of an update in turn, so it is encoded and framed once per process, not per client."""

    __slots__ = ("frame", "text")

    def __init__(self) -> None:
        self.text: str | None = None
        self.frame = b""

    def of(self, text: str) -> bytes:
        if text is not self.text:
            self.frame = text_frame(text.encode())
            self.text = text
        return self.frame


_last = _LastFrame()
frame_of = _last.of


class _Flag:
    """The part of ``asyncio.Event`` uvicorn uses (set, clear, wait), without a deque per instance."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class _ReceiveQueue:
    """The part of ``asyncio.Queue`` uvicorn uses (put_nowait, get, empty), for one reader.

    Unbounded as uvicorn's is; uvicorn pauses reading from the socket while an event waits.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque | None = None
        self._waiter: asyncio.Future | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None  # an idle connection keeps no deque
        return item


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets sans-I/O protocol with direct text frames and a smaller footprint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _ReceiveQueue()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The app task is created above but has not run: the scope is still ours to extend.
        self.scope["extensions"][WRITE_TEXT_EXTENSION] = self.write_text_now

    def write_text_now(self, text: str) -> bool:
        """Write one text frame at once (``WRITE_TEXT_EXTENSION``); False, writing nothing, when
        the connection is not open or the transport is pushing back (``send`` then waits)."""
        if (
            self.writable._set
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and not self.conn.extensions
            and self.conn.state is OPEN
            and not self.transport.is_closing()
        ):
            self.transport.write(frame_of(text))
            return True
        return False

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "websocket.send"
            and self.handshake_complete
            and not self.close_sent
            and self.initial_response is None
            and not self.conn.extensions
        ):
            text = message.get("text")
            if text is not None and message.get("bytes") is None:
                if not self.writable._set:
                    await self.writable.wait()
                if self.disconnected:
                    raise ClientDisconnected()
                if self.conn.state is OPEN and not self.close_sent:
                    self.transport.write(frame_of(text))
                    return
        accepting = not self.handshake_complete
        await super().send(message)
        if accepting and self.handshake_complete:
            # Sent (or refused): the handshake objects are not needed any more.
            self.request = None
            self.response = None
