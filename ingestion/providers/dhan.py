"""Dhan v2 live market feed client (NSE/BSE/MCX), written on the event loop without dhanhq's threads.

Wire format: ``wss://api-feed.dhan.co?version=2&token=...&clientId=...&authType=2``; JSON
text frames subscribe at most 100 instruments each (request code 15 ticker, 17 quote, 21
full; code + 1 unsubscribes, 12 disconnects); the server answers with one binary packet
per frame (``dhan_packets``). A connection carries at most 5000 instruments and a user may
hold 5 connections, so the client spreads instruments over up to 5 connections and refuses
anything beyond 25000 with a status error.

Timestamps: Dhan's LTT is the IST wall-clock time written as if it were a UTC epoch.
dhanhq formats it with ``datetime.fromtimestamp(ltt, timezone.utc)`` in ``utc_time()``,
which prints IST times (09:15:00 at the open), and Dhan confirmed in DhanHQ-py issue #51
that they "convert IST to EPOCH directly". So ``ts = (ltt - 19800) * 1000`` is true UTC
milliseconds; the offset is the ``ltt_utc_offset_s`` setting in case Dhan changes this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ingestion.providers import dhan_packets as dp
from ingestion.providers.base import Backoff, FeedClient, FeedError, FeedStatus, Subscription
from ingestion.ticks import Tick

logger = logging.getLogger(__name__)

REQUEST_CODES: dict[str, int] = {"ticker": 15, "quote": 17, "full": 21}
DISCONNECT_REQUEST = 12
MAX_PER_MESSAGE = 100
MAX_PER_CONNECTION = 5000
MAX_CONNECTIONS = 5
CREDENTIAL_CODES = frozenset({806, 807, 808, 809})
TOO_MANY_CONNECTIONS = 805
IST_OFFSET_S = 19800

Wire = tuple[str, str]  # (segment name, security id) as sent in subscription requests


def subscription_messages(request_code: int, instruments: Sequence[Wire]) -> list[str]:
    """JSON text frames for ``instruments``, at most ``MAX_PER_MESSAGE`` per frame."""
    messages = []
    for start in range(0, len(instruments), MAX_PER_MESSAGE):
        batch = instruments[start : start + MAX_PER_MESSAGE]
        messages.append(
            json.dumps(
                {
                    "RequestCode": request_code,
                    "InstrumentCount": len(batch),
                    "InstrumentList": [{"ExchangeSegment": seg, "SecurityId": sid} for seg, sid in batch],
                }
            )
        )
    return messages


class _Connection:
    """One websocket to Dhan and the instruments it carries."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.ids: set[int] = set()
        self.ws: websockets.ClientConnection | None = None
        self.task: asyncio.Task | None = None
        self.state = FeedStatus.IDLE
        # Serializes the initial subscription and live (un)subscribe messages on one socket,
        # so an unsubscribe can never overtake the subscribe it cancels.
        self.send_lock = asyncio.Lock()


class DhanFeedClient(FeedClient):
    """Streams Dhan packets as ``Tick`` objects over up to five websocket connections.

    Settings: ``feed_url``, ``mode`` (ticker|quote|full), ``backoff_base_s``,
    ``backoff_cap_s``, ``open_timeout_s``, ``ltt_utc_offset_s``. Credentials:
    ``access_token``, ``client_id``. Besides ticks it keeps ``prev_closes`` and
    ``open_interest`` per instrument, the last ``market_status`` packet, ``packet_counts``
    by response code and ``refused`` subscriptions with their reason.
    """

    kind = "dhan"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = str(self.settings.get("mode") or "quote").lower()
        self.prev_closes: dict[int, float] = {}
        self.open_interest: dict[int, int] = {}
        self.market_status: dict | None = None
        self.packet_counts: Counter[str] = Counter()
        self.refused: dict[int, str] = {}
        self._backoff_base = float(self.settings.get("backoff_base_s", 0.5))
        self._backoff_cap = float(self.settings.get("backoff_cap_s", 30.0))
        self._open_timeout = float(self.settings.get("open_timeout_s", 10.0))
        self._ltt_offset_s = int(self.settings.get("ltt_utc_offset_s", IST_OFFSET_S))
        self._connections: list[_Connection] = []
        self._connection_of: dict[int, _Connection] = {}
        self._wire: dict[int, Wire] = {}
        self._instrument_of: dict[tuple[int, int], int] = {}
        self._fatal: asyncio.Future[None] | None = None

    @property
    def request_code(self) -> int:
        return REQUEST_CODES.get(self.mode, REQUEST_CODES["quote"])

    @property
    def connection_count(self) -> int:
        """How many connections the current subscriptions need (open or being opened)."""
        return sum(1 for conn in self._connections if conn.task is not None and not conn.task.done())

    def status_dict(self) -> dict:
        return {**super().status_dict(), "connections": self.connection_count, "refused": len(self.refused)}

    # --- connection loop ----------------------------------------------------------------
    async def _run(self) -> None:
        self._check_config()
        self._fatal = asyncio.get_running_loop().create_future()
        if not self._connections:
            self._connections.append(_Connection(0))
        for conn in self._connections:
            self._start(conn)
        try:
            await self._fatal
        finally:
            self._fatal = None
            await self._stop_connections()

    def _check_config(self) -> None:
        missing = [key for key in ("access_token", "client_id") if not str(self.credentials.get(key) or "").strip()]
        if missing:
            raise FeedError(f"missing Dhan credentials: {', '.join(missing)}")
        if self.mode not in REQUEST_CODES:
            raise FeedError(f"unknown Dhan feed mode {self.mode!r}; use ticker, quote or full")

    def feed_url(self) -> str:
        """The websocket URL with the v2 auth query parameters (contains the token: never log it)."""
        base = urlsplit(str(self.settings.get("feed_url") or "wss://api-feed.dhan.co"))
        query = [
            *parse_qsl(base.query),
            ("version", "2"),
            ("token", str(self.credentials["access_token"]).strip()),
            ("clientId", str(self.credentials["client_id"]).strip()),
            ("authType", "2"),
        ]
        return urlunsplit(base._replace(query=urlencode(query)))

    def _start(self, conn: _Connection) -> None:
        if self._fatal is not None and (conn.task is None or conn.task.done()):
            conn.task = asyncio.create_task(self._connection_task(conn), name=f"feed-{self.code}-{conn.index}")

    async def _stop_connections(self) -> None:
        for conn in self._connections:
            if conn.ws is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await conn.ws.send(json.dumps({"RequestCode": DISCONNECT_REQUEST}))
        tasks = [conn.task for conn in self._connections if conn.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self._connections:
            conn.task = None
            conn.state = FeedStatus.IDLE

    async def _connection_task(self, conn: _Connection) -> None:
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # FeedError or a bug: end the whole client, visibly
            if self._fatal is not None and not self._fatal.done():
                self._fatal.set_exception(exc)

    async def _serve(self, conn: _Connection) -> None:
        backoff = Backoff(self._backoff_base, self._backoff_cap)
        while True:
            conn.state = FeedStatus.CONNECTING
            self._refresh_status()
            try:
                ws = await websockets.connect(
                    self.feed_url(),
                    open_timeout=self._open_timeout,
                    close_timeout=1,
                    compression=None,
                    max_queue=64,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise FeedError(
                        f"Dhan rejected the feed handshake (HTTP {status}): check access_token and client_id"
                    ) from None
                error, delay = f"handshake rejected: HTTP {status}", backoff.next_delay()
            except InvalidURI:
                raise FeedError(f"invalid feed_url {self.settings.get('feed_url')!r}") from None
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                error, delay = f"connect failed: {type(exc).__name__}: {exc}", backoff.next_delay()
            else:
                try:
                    error, delay = await self._stream(conn, ws, backoff)
                finally:
                    conn.ws = None
                    with contextlib.suppress(Exception):
                        await ws.close()
            self.stats.reconnects += 1
            conn.state = FeedStatus.BACKING_OFF
            self._refresh_status(error)
            logger.info("feed %s connection %d: %s; retrying in %.2fs", self.code, conn.index, error, delay)
            await asyncio.sleep(delay)

    async def _stream(self, conn: _Connection, ws: websockets.ClientConnection, backoff: Backoff) -> tuple[str, float]:
        """Subscribe and read until the socket ends; returns (why it ended, delay before retrying)."""
        conn.ws = ws
        snapshot = [self._wire[i] for i in conn.ids]  # taken with no await since ws was set
        packet_seen = False
        try:
            async with conn.send_lock:
                for message in subscription_messages(self.request_code, snapshot):
                    await ws.send(message)
            conn.state = FeedStatus.STREAMING
            self._refresh_status()
            async for frame in ws:
                if isinstance(frame, str):
                    self.count_malformed("text frame", frame)
                    continue
                try:
                    packet = dp.parse_packet(frame)
                except dp.DhanPacketError as exc:
                    self.count_malformed(str(exc), frame)
                    continue
                if packet.length_mismatch:
                    self.packet_counts["length_mismatch"] += 1
                    if self.packet_counts["length_mismatch"] == 1:
                        logger.warning(
                            "feed %s: header length field differs from the frame size (decoded anyway)", self.code
                        )
                if not packet_seen:
                    packet_seen = True
                    backoff.reset()
                if packet.code == dp.DISCONNECT:
                    return self._on_disconnect_packet(packet, backoff)
                await self._on_packet(packet)
        except ConnectionClosed as exc:
            return f"connection dropped: {exc}", backoff.next_delay()
        return "connection closed by Dhan", backoff.next_delay()

    def _on_disconnect_packet(self, packet: dp.DhanPacket, backoff: Backoff) -> tuple[str, float]:
        code = packet.error_code or 0
        reason = f"{code}: {dp.DISCONNECT_REASONS.get(code, 'disconnected by Dhan')}"
        if code in CREDENTIAL_CODES:
            raise FeedError(reason)  # retrying with the same credentials would only hammer Dhan
        if code == TOO_MANY_CONNECTIONS:
            return reason, self._backoff_cap + backoff.next_delay()
        return reason, backoff.next_delay()

    def _refresh_status(self, error: str = "") -> None:
        states = {conn.state for conn in self._connections if conn.task is not None}
        for status in (FeedStatus.BACKING_OFF, FeedStatus.CONNECTING, FeedStatus.STREAMING):
            if status in states:
                self.set_status(status, error)
                return

    # --- packets -> ticks ---------------------------------------------------------------
    async def _on_packet(self, packet: dp.DhanPacket) -> None:
        self.packet_counts[packet.kind] += 1
        code = packet.code
        if code == dp.MARKET_STATUS:
            self.market_status = {
                "segment": packet.segment_name,
                "security_id": packet.security_id,
                "received_at": time.time(),
            }
            return
        instrument_id = self._instrument_of.get((packet.segment, packet.security_id))
        if instrument_id is None:  # e.g. a packet in flight while we unsubscribed
            self.packet_counts["unknown_instrument"] += 1
            return
        if code == dp.PREV_CLOSE:
            if packet.prev_close and packet.prev_close > 0:
                self.prev_closes[instrument_id] = packet.prev_close
            return
        if code == dp.OI:
            self.open_interest[instrument_id] = packet.oi or 0
            return
        if code == dp.FULL:
            self.open_interest[instrument_id] = packet.oi or 0
        tick = self._to_tick(instrument_id, packet)
        if tick is not None:
            await self.emit(tick)

    def _to_tick(self, instrument_id: int, packet: dp.DhanPacket) -> Tick | None:
        price = packet.ltp
        if not price or not math.isfinite(price) or price <= 0:  # no trade yet, or not a number
            self.packet_counts["no_price"] += 1
            self.note_refused(f"{packet.kind} packet without a valid price")
            return None
        ltt = packet.ltt or 0
        ts = (ltt - self._ltt_offset_s) * 1000 if ltt > 0 else int(time.time() * 1000)
        prev_close = self.prev_closes.get(instrument_id)
        if packet.code == dp.TICKER:
            return Tick(instrument_id, self.code, ts, price, prev_close=prev_close)
        bid = ask = None
        if packet.depth:
            best = packet.depth[0]
            bid, ask = _positive(best.bid_price), _positive(best.ask_price)
        return Tick(
            instrument_id,
            self.code,
            ts,
            price,
            size=packet.ltq,
            day_volume=packet.volume,
            day_open=_positive(packet.open),
            day_high=_positive(packet.high),
            day_low=_positive(packet.low),
            prev_close=prev_close if prev_close is not None else _positive(packet.close),
            bid=bid,
            ask=ask,
        )

    # --- subscriptions ------------------------------------------------------------------
    async def _on_subscribe(self, added: list[Subscription]) -> None:
        fresh: dict[_Connection, list[int]] = defaultdict(list)
        refused: dict[int, str] = {}
        for sub in added:
            reason = self._admit(sub, fresh)
            if reason:
                refused[sub.instrument_id] = reason
        if refused:
            for instrument_id in refused:
                self.subscriptions.pop(instrument_id, None)
            self.refused.update(refused)
            example_id, example = next(iter(refused.items()))
            self.set_status(
                self.status, f"refused {len(refused)} subscription(s), e.g. instrument {example_id}: {example}"
            )
        # Capture each socket before the first await: a connection that opens later
        # subscribes these instruments itself from its snapshot.
        sends = [(conn, conn.ws, ids) for conn, ids in fresh.items()]
        for conn, ws, ids in sends:
            if ws is None:
                self._start(conn)
            else:
                await self._send(conn, ws, self.request_code, [self._wire[i] for i in ids])

    def _admit(self, sub: Subscription, fresh: dict[_Connection, list[int]]) -> str:
        segment = sub.segment.strip().upper()
        segment_code = dp.SEGMENT_CODES.get(segment)
        if segment_code is None:
            return f"unknown Dhan segment {sub.segment!r}"
        security_id = sub.search_code.strip()
        if not security_id.isdigit():
            return f"security id {sub.search_code!r} is not numeric"
        key = (segment_code, int(security_id))
        if key in self._instrument_of:
            return f"{segment}/{security_id} is already streamed for instrument {self._instrument_of[key]}"
        conn = self._connection_with_room()
        if conn is None:
            limit = MAX_CONNECTIONS * MAX_PER_CONNECTION
            return f"over Dhan's limit of {limit} instruments ({MAX_CONNECTIONS} connections x {MAX_PER_CONNECTION})"
        conn.ids.add(sub.instrument_id)
        self._connection_of[sub.instrument_id] = conn
        self._wire[sub.instrument_id] = (segment, security_id)
        self._instrument_of[key] = sub.instrument_id
        fresh[conn].append(sub.instrument_id)
        self.refused.pop(sub.instrument_id, None)
        return ""

    def _connection_with_room(self) -> _Connection | None:
        for conn in self._connections:
            if len(conn.ids) < MAX_PER_CONNECTION:
                return conn
        if len(self._connections) < MAX_CONNECTIONS:
            conn = _Connection(len(self._connections))
            self._connections.append(conn)
            return conn
        return None

    async def _on_unsubscribe(self, removed: list[Subscription]) -> None:
        gone: dict[_Connection, list[Wire]] = defaultdict(list)
        for sub in removed:
            conn = self._connection_of.pop(sub.instrument_id, None)
            if conn is None:
                continue
            conn.ids.discard(sub.instrument_id)
            segment, security_id = wire = self._wire.pop(sub.instrument_id)
            self._instrument_of.pop((dp.SEGMENT_CODES[segment], int(security_id)), None)
            self.prev_closes.pop(sub.instrument_id, None)
            self.open_interest.pop(sub.instrument_id, None)
            gone[conn].append(wire)
        sends = [(conn, conn.ws, wires) for conn, wires in gone.items()]
        for conn, ws, wires in sends:
            if ws is not None:
                await self._send(conn, ws, self.request_code + 1, wires)

    async def _send(
        self, conn: _Connection, ws: websockets.ClientConnection, request_code: int, wires: Iterable[Wire]
    ) -> None:
        try:
            async with conn.send_lock:
                for message in subscription_messages(request_code, list(wires)):
                    await ws.send(message)
        except ConnectionClosed:
            pass  # the reconnect resubscribes the whole current set


def _positive(value: float | None) -> float | None:
    """Dhan sends 0 for fields it has no value for yet; a zero price is never real."""
    return value if value is not None and math.isfinite(value) and value > 0 else None
