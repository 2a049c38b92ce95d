"""Yahoo Finance live feed: the streamer websocket that yfinance's ``live`` module speaks.

Wire format (yfinance 1.x ``yfinance/live.py``): the client sends ``{"subscribe": [...]}``
with its whole symbol set each time and ``{"unsubscribe": [...]}`` with the removed ones;
the server answers JSON text frames ``{"type": "pricing", "message": "<base64>"}`` whose
payload is a protobuf ``PricingData`` (decoded with yfinance's own generated module).

yfinance's ``AsyncWebSocket`` is not reused: it does not back off, does not re-subscribe
after a reconnect and raises out of its loop on a bad frame. This client owns the loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import math
import time

import numpy
import orjson
import websockets
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from websockets.asyncio.client import ClientConnection, connect
from yfinance.pricing_pb2 import PricingData

from ingestion.providers.base import Backoff, FeedClient, FeedError, FeedStatus, Subscription
from ingestion.ticks import Tick

logger = logging.getLogger(__name__)

DEFAULT_FEED_URL = "wss://streamer.finance.yahoo.com/?version=2"

# Protobuf ``float`` fields arrive as float32 widened to float64 (185.51 -> 185.50999450...).
_FLOAT32_FIELDS = frozenset(f.name for f in PricingData.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_FLOAT)

# Below this an epoch timestamp is in seconds: 10**11 ms is 1973, 10**11 s is year 5138.
_SECONDS_LIMIT = 10**11


@functools.lru_cache(maxsize=65_536)
def clean_float32(value: float) -> float:
    """The float64 of a float32's shortest decimal form: 185.50999450683594 -> 185.51.

    numpy prints a float32 with the fewest digits that read back to the same float32
    (Dragon4), which is what the provider meant. A fixed ``.7g`` would be wrong for
    large prices (123456.79 would become 123456.8). Cached because a frame repeats most
    of its values (day high/low/open, previous close, often bid and ask) from the last one.
    """
    return float(str(numpy.float32(value)))


def decode_pricing_frame(text: str | bytes) -> dict:
    """Decode one streamer frame into a dict of the ``PricingData`` fields that were sent.

    Keys are the proto field names; fields at their protobuf default (absent on the wire)
    are left out. float32 fields are cleaned with ``clean_float32``. Raises ``ValueError``
    when the frame is not JSON, not a ``pricing`` frame, not base64, not a ``PricingData``,
    or has no ``id`` or no finite ``price``.
    """
    try:
        envelope = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("type") != "pricing":
        raise ValueError("not a pricing frame")
    payload = envelope.get("message")
    if not isinstance(payload, str) or not payload:
        raise ValueError("no message")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64: {exc}") from exc
    message = PricingData()
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(f"bad protobuf: {exc}") from exc
    data = {}
    for descriptor, value in message.ListFields():
        name = descriptor.name
        data[name] = clean_float32(value) if name in _FLOAT32_FIELDS else value
    if not data.get("id"):
        raise ValueError("no id")
    price = data.get("price")
    if price is None or not math.isfinite(price):
        raise ValueError("no price")
    return data


def _epoch_ms(value: int | None) -> int:
    """Yahoo sends epoch ms; a value small enough to be seconds is scaled to ms.

    A frame without a time (never seen from Yahoo, but legal protobuf) gets its arrival
    time: this is a live feed, so that is the best estimate there is.
    """
    if not value:
        return time.time_ns() // 1_000_000
    if value < 0:
        raise ValueError("negative time")
    return value * 1000 if value < _SECONDS_LIMIT else value


def _positive(value: float | None) -> float | None:
    """Prices that Yahoo leaves at 0 are unknown, not zero."""
    return value if value else None


def pricing_to_tick(data: dict, *, instrument_id: int, provider: str) -> Tick:
    """A decoded ``PricingData`` dict as a ``Tick`` (absent fields become ``None``)."""
    return Tick(
        instrument_id=instrument_id,
        provider=provider,
        ts=_epoch_ms(data.get("time")),
        price=data["price"],
        size=data.get("last_size") or None,
        day_volume=data.get("day_volume") or None,
        day_open=_positive(data.get("open_price")),
        day_high=_positive(data.get("day_high")),
        day_low=_positive(data.get("day_low")),
        prev_close=_positive(data.get("previous_close")),
        bid=_positive(data.get("bid")),
        ask=_positive(data.get("ask")),
    )


def yahoo_symbol(subscription: Subscription) -> str:
    """The Yahoo symbol of an instrument: its search code (``RELIANCE.NS``), else its symbol.

    Upper-cased because Yahoo symbols are case-insensitive and the streamer answers in
    upper case.
    """
    return (subscription.search_code or subscription.symbol).strip().upper()


class YahooFeedClient(FeedClient):
    """Streams quotes from Yahoo's websocket and reconnects with backoff when it drops.

    Settings: ``feed_url`` (default the real streamer), ``resubscribe_s`` (15: Yahoo goes
    quiet on a connection that has not repeated its subscription for a while),
    ``backoff_base_s`` (0.5), ``backoff_cap_s`` (30), ``connect_timeout_s`` (10),
    ``ping_interval_s`` (20: websocket pings detect a dead TCP connection).

    ``stats.reconnects`` counts every reconnection attempt after a drop or a failed
    connect. Frames for symbols not subscribed are skipped and counted in ``stats.unknown``.
    """

    kind = "yahoo"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        s = self.settings
        self.feed_url: str = s.get("feed_url") or DEFAULT_FEED_URL
        self.resubscribe_s = float(s.get("resubscribe_s", 15))
        self.backoff = Backoff(base=float(s.get("backoff_base_s", 0.5)), cap=float(s.get("backoff_cap_s", 30)))
        self.connect_timeout_s = float(s.get("connect_timeout_s", 10))
        self.ping_interval_s = float(s.get("ping_interval_s", 20))
        # Yahoo symbol -> instrument ids (two instrument rows may share one Yahoo symbol)
        self._ids_by_symbol: dict[str, list[int]] = {}
        self._ws: ClientConnection | None = None

    # --- connection loop ----------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self.set_status(FeedStatus.CONNECTING)
            try:
                error = await self._stream_once()
            except websockets.InvalidURI as exc:
                raise FeedError(f"bad feed_url: {exc}") from exc
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if self._stopping:
                return
            self.stats.reconnects += 1
            delay = self.backoff.next_delay()
            self.set_status(FeedStatus.BACKING_OFF, error)
            logger.info("feed %s: reconnecting in %.2fs after %s", self.code, delay, error)
            await asyncio.sleep(delay)

    async def _stream_once(self) -> str:
        """One connection: subscribe, read until it ends, return why it ended."""
        async with connect(
            self.feed_url,
            open_timeout=self.connect_timeout_s,
            ping_interval=self.ping_interval_s or None,
            close_timeout=2,
        ) as ws:
            self._ws = ws
            resubscriber = asyncio.create_task(self._resubscribe_forever(ws), name=f"feed-{self.code}-resubscribe")
            try:
                await self._send_subscribe(ws)
                self.set_status(FeedStatus.STREAMING)
                got_data = False
                async for frame in ws:
                    if await self._handle_frame(frame) and not got_data:
                        # Reset only once data flows: a server that accepts and drops at
                        # once must not turn the backoff into a tight loop.
                        got_data = True
                        self.backoff.reset()
            except websockets.ConnectionClosed as exc:
                return f"connection lost: {exc}"
            finally:
                self._ws = None
                resubscriber.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resubscriber
        return "connection closed by server"

    async def _resubscribe_forever(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(self.resubscribe_s)
                await self._send_subscribe(ws)

    async def _send_subscribe(self, ws: ClientConnection) -> None:
        if self._ids_by_symbol:
            await ws.send(orjson.dumps({"subscribe": sorted(self._ids_by_symbol)}).decode())

    async def _handle_frame(self, frame: str | bytes) -> bool:
        """Queue the frame's tick(s); ``True`` when it carried a good quote."""
        try:
            data = decode_pricing_frame(frame)
            ids = self._ids_by_symbol.get(data["id"]) or self._ids_by_symbol.get(data["id"].upper())
            if not ids:
                self.stats.unknown += 1
                return True
            ticks = [pricing_to_tick(data, instrument_id=i, provider=self.code) for i in ids]
        except ValueError as exc:
            self.count_malformed(str(exc), frame)
            return False
        for tick in ticks:
            await self.emit(tick)
        return True

    # --- subscriptions ------------------------------------------------------------------
    async def _on_subscribe(self, added: list[Subscription]) -> None:
        for sub in added:
            self._ids_by_symbol.setdefault(yahoo_symbol(sub), []).append(sub.instrument_id)
        ws = self._ws
        if ws is not None:
            # A send on a connection that just dropped is fine to lose: the reconnect
            # subscribes the whole set again.
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._send_subscribe(ws)

    async def _on_unsubscribe(self, removed: list[Subscription]) -> None:
        gone: list[str] = []
        for sub in removed:
            symbol = yahoo_symbol(sub)
            ids = self._ids_by_symbol.get(symbol, [])
            if sub.instrument_id in ids:
                ids.remove(sub.instrument_id)
            if not ids and self._ids_by_symbol.pop(symbol, None) is not None:
                gone.append(symbol)
        ws = self._ws
        if ws is not None and gone:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(orjson.dumps({"unsubscribe": sorted(gone)}).decode())

    def subscribed_symbols(self) -> set[str]:
        """The Yahoo symbols this client asks the streamer for."""
        return set(self._ids_by_symbol)
