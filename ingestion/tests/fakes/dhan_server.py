"""A local fake of Dhan's v2 live market feed that speaks the real wire format.

Use it from tests and benchmarks::

    async with FakeDhanServer(token="t", client_id="c") as server:
        client = DhanFeedClient(code="DHAN", settings={"feed_url": server.url}, credentials=...)
        await client.connect()
        await server.wait_for(lambda: server.subscribed_count() == n)
        await server.send_to_all(quote_packet("NSE_EQ", 2885, ltp=2885.5, ...))

API: ``url`` (base URL, the client adds the query), ``connections`` (every accepted
connection, oldest first; each has ``query``, ``messages`` (the JSON requests, in order),
``subscribed`` ({(segment, security id): request code}) and ``send(packet)``),
``handshakes`` (the query of every handshake, rejected ones included), ``rejected``,
``open_connections()``, ``subscribed_count()``, ``send_to_all(packet)``, ``drop_all()``,
``wait_for(predicate)``. Packet builders: ``ticker_packet``, ``quote_packet``,
``full_packet``, ``oi_packet``, ``prev_close_packet``, ``market_status_packet``,
``disconnect_packet``, ``raw_packet``; any bytes (e.g. a truncated packet) can be sent.

The header's message length is the whole packet length, header included.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable, Sequence
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

SEGMENT_CODES = {
    "IDX_I": 0,
    "NSE_EQ": 1,
    "NSE_FNO": 2,
    "NSE_CURRENCY": 3,
    "BSE_EQ": 4,
    "MCX_COMM": 5,
    "BSE_CURRENCY": 7,
    "BSE_FNO": 8,
}
SUBSCRIBE_CODES = {15, 17, 21}
UNSUBSCRIBE_CODES = {16, 18, 22}
DISCONNECT_REQUEST = 12

_HEADER = struct.Struct("<BHBI")
_TICKER = struct.Struct("<fI")
_QUOTE = struct.Struct("<fHIfIIIffff")
_FULL = struct.Struct("<fHIfIIIIIIffff")
_DEPTH_LEVEL = struct.Struct("<IIHHff")
_OI = struct.Struct("<I")
_PREV_CLOSE = struct.Struct("<fI")
_DISCONNECT = struct.Struct("<H")

# (bid qty, ask qty, bid orders, ask orders, bid price, ask price)
DepthRow = tuple[int, int, int, int, float, float]


def _segment(segment: int | str) -> int:
    return SEGMENT_CODES[segment] if isinstance(segment, str) else segment


def raw_packet(code: int, segment: int | str, security_id: int, payload: bytes = b"") -> bytes:
    """Header + payload with the right message length."""
    return _HEADER.pack(code, _HEADER.size + len(payload), _segment(segment), security_id) + payload


def ticker_packet(segment: int | str, security_id: int, ltp: float, ltt: int) -> bytes:
    return raw_packet(2, segment, security_id, _TICKER.pack(ltp, ltt))


def quote_packet(
    segment: int | str,
    security_id: int,
    *,
    ltp: float,
    ltq: int = 0,
    ltt: int = 0,
    avg_price: float = 0.0,
    volume: int = 0,
    total_sell_qty: int = 0,
    total_buy_qty: int = 0,
    open: float = 0.0,
    close: float = 0.0,
    high: float = 0.0,
    low: float = 0.0,
) -> bytes:
    payload = _QUOTE.pack(ltp, ltq, ltt, avg_price, volume, total_sell_qty, total_buy_qty, open, close, high, low)
    return raw_packet(4, segment, security_id, payload)


def full_packet(
    segment: int | str,
    security_id: int,
    *,
    ltp: float,
    ltq: int = 0,
    ltt: int = 0,
    avg_price: float = 0.0,
    volume: int = 0,
    total_sell_qty: int = 0,
    total_buy_qty: int = 0,
    oi: int = 0,
    oi_day_high: int = 0,
    oi_day_low: int = 0,
    open: float = 0.0,
    close: float = 0.0,
    high: float = 0.0,
    low: float = 0.0,
    depth: Sequence[DepthRow] = (),
) -> bytes:
    rows = list(depth) + [(0, 0, 0, 0, 0.0, 0.0)] * (5 - len(depth))
    quote = (ltp, ltq, ltt, avg_price, volume, total_sell_qty, total_buy_qty)
    payload = _FULL.pack(*quote, oi, oi_day_high, oi_day_low, open, close, high, low)
    payload += b"".join(_DEPTH_LEVEL.pack(*row) for row in rows[:5])
    return raw_packet(8, segment, security_id, payload)


def oi_packet(segment: int | str, security_id: int, oi: int) -> bytes:
    return raw_packet(5, segment, security_id, _OI.pack(oi))


def prev_close_packet(segment: int | str, security_id: int, prev_close: float, prev_oi: int = 0) -> bytes:
    return raw_packet(6, segment, security_id, _PREV_CLOSE.pack(prev_close, prev_oi))


def market_status_packet(segment: int | str = 0, security_id: int = 0) -> bytes:
    return raw_packet(7, segment, security_id)


def disconnect_packet(code: int) -> bytes:
    return raw_packet(50, 0, 0, _DISCONNECT.pack(code))


class FakeConnection:
    """One client connection as the fake server sees it."""

    def __init__(self, ws: websockets.ServerConnection, query: dict[str, str]) -> None:
        self.ws = ws
        self.query = query
        self.messages: list[dict] = []
        self.subscribed: dict[tuple[str, str], int] = {}
        self.closed = False

    async def send(self, packet: bytes) -> None:
        try:
            await self.ws.send(packet)
        except ConnectionClosed:
            self.closed = True


class FakeDhanServer:
    """Dhan's v2 feed on 127.0.0.1: checks the auth query, records subscriptions, sends packets."""

    def __init__(
        self,
        *,
        token: str = "test-token",  # noqa: S107 - a fake server's test token
        client_id: str = "1000000001",
        check_auth: bool = True,
        reject_status: int = HTTPStatus.UNAUTHORIZED,
    ) -> None:
        self.token = token
        self.client_id = client_id
        self.check_auth = check_auth
        self.reject_status = reject_status
        self.connections: list[FakeConnection] = []
        self.handshakes: list[dict[str, str]] = []
        self.rejected = 0
        self._server: websockets.Server | None = None
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> FakeDhanServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handler, "127.0.0.1", 0, process_request=self._check_handshake, compression=None
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"ws://{host}:{port}"

    # --- inspection ---------------------------------------------------------------------
    def open_connections(self) -> list[FakeConnection]:
        return [conn for conn in self.connections if not conn.closed]

    def subscribed_count(self) -> int:
        """Instruments subscribed over all open connections."""
        return sum(len(conn.subscribed) for conn in self.open_connections())

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever a connection or message arrives)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- actions ------------------------------------------------------------------------
    async def send_to_all(self, packet: bytes) -> None:
        """Send one frame to every open connection."""
        for conn in self.open_connections():
            await conn.send(packet)

    async def drop_all(self) -> None:
        """Cut every connection without a close handshake, like a network failure."""
        for conn in self.open_connections():
            conn.closed = True
            conn.ws.transport.abort()
        await self._notify()

    # --- server side --------------------------------------------------------------------
    def _check_handshake(self, connection: websockets.ServerConnection, request: Request):
        query = dict(parse_qsl(urlsplit(request.path).query))
        self.handshakes.append(query)
        if query.get("version") != "2" or query.get("authType") != "2":
            self.rejected += 1
            return connection.respond(HTTPStatus.BAD_REQUEST, "version=2 and authType=2 required\n")
        if self.check_auth and (query.get("token") != self.token or query.get("clientId") != self.client_id):
            self.rejected += 1
            return connection.respond(self.reject_status, "invalid token or client id\n")
        return None

    async def _handler(self, ws: websockets.ServerConnection) -> None:
        conn = FakeConnection(ws, dict(parse_qsl(urlsplit(ws.request.path).query)))
        self.connections.append(conn)
        await self._notify()
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    continue
                request = json.loads(message)
                conn.messages.append(request)
                code = request.get("RequestCode")
                for item in request.get("InstrumentList", []):
                    key = (item["ExchangeSegment"], item["SecurityId"])
                    if code in SUBSCRIBE_CODES:
                        conn.subscribed[key] = code
                    elif code in UNSUBSCRIBE_CODES:
                        conn.subscribed.pop(key, None)
                await self._notify()
                if code == DISCONNECT_REQUEST:
                    await ws.close()
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            await self._notify()
