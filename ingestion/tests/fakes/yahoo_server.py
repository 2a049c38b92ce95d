"""A local stand-in for Yahoo's streamer that speaks the real wire format.

    async with FakeYahooServer() as server:
        client = YahooFeedClient(code="y", settings={"feed_url": server.url})
        ...
        await server.wait_until(lambda: "AAPL" in server.subscribed)
        await server.push("AAPL", price=185.51, time=1705334400000, day_volume=1000)

- ``received``: every JSON message any client sent, in order, as ``Received(conn, message)``
  (``conn`` numbers connections from 1 in the order they were accepted).
- ``subscribed``: the union of the symbol sets of the open connections. A ``subscribe``
  message adds to its connection's set, an ``unsubscribe`` removes from it.
- ``push(symbol, **fields)``: a genuine base64 protobuf ``PricingData`` frame (built with
  yfinance's own ``pricing_pb2``) to every open connection subscribed to ``symbol``.
- ``send_raw(frame)``: any text or bytes to every open connection (junk frames).
- ``drop_all()``: aborts every connection's TCP stream without a close frame.
- ``wait_until(predicate)``: waits until ``predicate()`` holds after some server event.

Only ``/?version=2`` is accepted, like the real endpoint's protocol version; other paths
get HTTP 400 and are counted in ``rejected``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from yfinance.pricing_pb2 import PricingData


def pricing_frame(symbol: str, **fields) -> str:
    """One streamer text frame for ``symbol``; ``time`` defaults to now (epoch ms).

    Fields are ``PricingData`` field names (``price``, ``day_volume``, ``bid`` ...). Pass
    ``time=0`` to leave the time out of the frame.
    """
    fields.setdefault("time", time.time_ns() // 1_000_000)
    payload = PricingData(id=symbol, **fields).SerializeToString()
    return json.dumps({"type": "pricing", "message": base64.b64encode(payload).decode()})


@dataclass(frozen=True)
class Received:
    """A JSON message a client sent: the connection number and the decoded message."""

    conn: int
    message: dict


@dataclass(eq=False)
class _Connection:
    number: int
    ws: ServerConnection
    symbols: set[str] = field(default_factory=set)


class FakeYahooServer:
    """An asyncio websockets server on 127.0.0.1 (random port) acting as Yahoo's streamer."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.connections_accepted = 0
        self.rejected = 0
        self._open: list[_Connection] = []
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        self.url = ""

    async def __aenter__(self) -> FakeYahooServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check_path)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/?version=2"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # --- what clients did ---------------------------------------------------------------
    @property
    def subscribed(self) -> set[str]:
        return set().union(*(c.symbols for c in self._open))

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def messages(self, conn: int | None = None) -> list[dict]:
        """The messages received, from one connection or from all."""
        return [r.message for r in self.received if conn is None or r.conn == conn]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (checked after every server event)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    # --- what the server does -----------------------------------------------------------
    async def push(self, symbol: str, **fields) -> int:
        """Send a pricing frame to the connections subscribed to ``symbol``; how many got it."""
        frame = pricing_frame(symbol, **fields)
        sent = 0
        for conn in [c for c in self._open if symbol in c.symbols]:
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(frame)
                sent += 1
        return sent

    async def send_raw(self, frame: str | bytes) -> None:
        """Send ``frame`` as is to every open connection."""
        for conn in list(self._open):
            await conn.ws.send(frame)

    async def drop_all(self) -> None:
        """Cut every connection abruptly (no close frame), as a network failure would."""
        dropped = list(self._open)
        for conn in dropped:
            conn.ws.transport.abort()
        await self.wait_until(lambda: not any(c in self._open for c in dropped))

    # --- internals ----------------------------------------------------------------------
    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        if query.get("version") != ["2"]:
            self.rejected += 1
            return connection.respond(HTTPStatus.BAD_REQUEST, "version=2 required\n")
        return None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections_accepted += 1
        conn = _Connection(self.connections_accepted, ws)
        self._open.append(conn)
        await self._notify()
        try:
            async for text in ws:
                message = json.loads(text)
                self.received.append(Received(conn.number, message))
                conn.symbols.update(message.get("subscribe", ()))
                conn.symbols.difference_update(message.get("unsubscribe", ()))
                await self._notify()
        except ConnectionClosed:
            pass  # a dropped client is part of what this server simulates
        finally:
            self._open.remove(conn)
            await self._notify()
