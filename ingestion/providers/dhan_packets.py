"""Dhan v2 live market feed: the binary response packets and their parser.

Layouts are from Dhan's v2 "Live Market Feed" documentation and cross-checked against
dhanhq 2.x ``marketfeed.py``. Every packet is little-endian and starts with an 8-byte
header ``<BHBI``: response code, message length, exchange segment, security id.

Two wire details the documentation leaves open, and what this parser does about them:

- The header's message length is described as "the length of the entire payload packet"; it
  is not needed to decode (the response code fixes the layout), so a frame at least as long as
  its layout is decoded whatever the field says and the mismatch is flagged for counting.
  Whether that includes the 8 header bytes is not stated, so a frame is accepted when the
  length equals the whole frame or the frame minus the header; anything else (a truncated
  or padded frame) is rejected. Our fake server sends the whole-packet length.
- In the quote and full packets dhanhq names the float after "open" ``close``; Dhan's table
  calls it "Day Close Value - only sent post market close", while Dhan support and users
  measuring the live feed report that it carries the previous session's close during
  trading. The parser keeps it as ``close``; the client uses it as ``prev_close`` only
  when no previous-close packet (code 6, unambiguous) has been seen for the instrument.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace

HEADER_SIZE = 8

TICKER = 2
QUOTE = 4
OI = 5
PREV_CLOSE = 6
MARKET_STATUS = 7
FULL = 8
DISCONNECT = 50

PACKET_NAMES: dict[int, str] = {
    TICKER: "ticker",
    QUOTE: "quote",
    OI: "oi",
    PREV_CLOSE: "prev_close",
    MARKET_STATUS: "market_status",
    FULL: "full",
    DISCONNECT: "disconnect",
}

# Numeric exchange segment in response headers <-> the name used in subscription requests.
SEGMENTS: dict[int, str] = {
    0: "IDX_I",
    1: "NSE_EQ",
    2: "NSE_FNO",
    3: "NSE_CURRENCY",
    4: "BSE_EQ",
    5: "MCX_COMM",
    7: "BSE_CURRENCY",
    8: "BSE_FNO",
}
SEGMENT_CODES: dict[str, int] = {name: code for code, name in SEGMENTS.items()}

# Reason codes of the disconnect packet (50).
DISCONNECT_REASONS: dict[int, str] = {
    805: "too many websocket connections",
    806: "data APIs not subscribed",
    807: "access token expired",
    808: "invalid client id",
    809: "authentication failed",
}

DEPTH_LEVELS = 5
_HEADER = "<BHBI"
_DEPTH_LEVEL = "IIHHff"
LAYOUTS: dict[int, struct.Struct] = {
    TICKER: struct.Struct(_HEADER + "fI"),
    QUOTE: struct.Struct(_HEADER + "fHIfIIIffff"),
    OI: struct.Struct(_HEADER + "I"),
    PREV_CLOSE: struct.Struct(_HEADER + "fI"),
    MARKET_STATUS: struct.Struct(_HEADER),
    FULL: struct.Struct(_HEADER + "fHIfIIIIIIffff" + _DEPTH_LEVEL * DEPTH_LEVELS),
    DISCONNECT: struct.Struct(_HEADER + "H"),
}

_DEPTH_STARTS = range(18, 18 + 6 * DEPTH_LEVELS, 6)  # first depth field in a full packet's unpacked tuple
_F32 = struct.Struct("<f")
# Prices repeat (the same LTP, depth and day values tick after tick), so cleaning is memoized;
# the bound keeps memory flat over a long session.
_CLEAN_CACHE: dict[float, float] = {}
_CLEAN_CACHE_MAX = 1 << 16


class DhanPacketError(ValueError):
    """A frame that is not a well-formed Dhan response packet."""


@dataclass(slots=True)
class DepthLevel:
    """One level of the five-level order book in a full packet."""

    bid_qty: int
    ask_qty: int
    bid_orders: int
    ask_orders: int
    bid_price: float
    ask_price: float


@dataclass(slots=True)
class DhanPacket:
    """One parsed response packet; fields a packet kind does not carry stay ``None``.

    Prices are float64 cleaned of float32 noise (see ``clean_price``); ``ltt`` is the raw
    wire value in seconds (IST wall clock as epoch, see ``DhanFeedClient``).
    """

    code: int
    segment: int
    security_id: int
    ltp: float | None = None
    ltq: int | None = None
    ltt: int | None = None
    avg_price: float | None = None
    volume: int | None = None
    total_sell_qty: int | None = None
    total_buy_qty: int | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    prev_close: float | None = None
    prev_oi: int | None = None
    depth: tuple[DepthLevel, ...] = ()
    error_code: int | None = None
    length_mismatch: bool = False  # the header's length field disagreed with the frame size

    @property
    def kind(self) -> str:
        return PACKET_NAMES.get(self.code, str(self.code))

    @property
    def segment_name(self) -> str:
        return SEGMENTS.get(self.segment, str(self.segment))


def clean_price(value: float) -> float:
    """A float32 wire value as the float64 with the shortest decimal that is the same float32.

    ``2885.5`` stays ``2885.5`` and ``24567.85`` (float32 24567.849609375) becomes
    ``24567.85``; seven significant digits suffice for most prices, eight or nine are
    tried for the rest so no value changes its float32 identity.
    """
    cleaned = _CLEAN_CACHE.get(value)
    if cleaned is not None:
        return cleaned
    cleaned = _shortest_float32_decimal(value)
    if len(_CLEAN_CACHE) >= _CLEAN_CACHE_MAX:
        _CLEAN_CACHE.clear()
    _CLEAN_CACHE[value] = cleaned
    return cleaned


def _shortest_float32_decimal(value: float) -> float:
    if not math.isfinite(value):
        return value
    wire = _F32.pack(value)
    for digits in (7, 8, 9):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _F32.pack(candidate) == wire:
                return candidate
        except OverflowError:  # rounding up past the float32 maximum
            continue
    return value


def parse_packet(data: bytes) -> DhanPacket:
    """Parse one binary frame; raises ``DhanPacketError`` for unknown, short or padded frames."""
    size = len(data)
    if size < HEADER_SIZE:
        raise DhanPacketError(f"frame of {size} bytes is shorter than the {HEADER_SIZE}-byte header")
    code = data[0]
    layout = LAYOUTS.get(code)
    if layout is None:
        raise DhanPacketError(f"unknown response code {code}")
    if size < layout.size:
        raise DhanPacketError(f"{PACKET_NAMES[code]} packet: frame has {size} bytes, layout needs {layout.size}")
    # The length field's convention is not documented firmly (whole frame, payload only, or
    # another byte order in some clients): a frame at least as long as its layout is decoded
    # whatever it says, and the disagreement is reported (``length_mismatch``) for counting.
    length = data[1] | data[2] << 8
    packet = _decode(code, layout, data)
    if length not in (size, size - HEADER_SIZE):
        packet = replace(packet, length_mismatch=True)
    return packet


def _decode(code: int, layout, data: bytes) -> DhanPacket:
    f = layout.unpack_from(data)
    segment, security_id = f[2], f[3]
    if code == TICKER:
        return DhanPacket(code, segment, security_id, ltp=clean_price(f[4]), ltt=f[5])
    if code == QUOTE:
        return DhanPacket(
            code,
            segment,
            security_id,
            ltp=clean_price(f[4]),
            ltq=f[5],
            ltt=f[6],
            avg_price=clean_price(f[7]),
            volume=f[8],
            total_sell_qty=f[9],
            total_buy_qty=f[10],
            open=clean_price(f[11]),
            close=clean_price(f[12]),
            high=clean_price(f[13]),
            low=clean_price(f[14]),
        )
    if code == FULL:
        depth = tuple(
            [
                DepthLevel(f[i], f[i + 1], f[i + 2], f[i + 3], clean_price(f[i + 4]), clean_price(f[i + 5]))
                for i in _DEPTH_STARTS
            ]
        )
        return DhanPacket(
            code,
            segment,
            security_id,
            ltp=clean_price(f[4]),
            ltq=f[5],
            ltt=f[6],
            avg_price=clean_price(f[7]),
            volume=f[8],
            total_sell_qty=f[9],
            total_buy_qty=f[10],
            oi=f[11],
            oi_day_high=f[12],
            oi_day_low=f[13],
            open=clean_price(f[14]),
            close=clean_price(f[15]),
            high=clean_price(f[16]),
            low=clean_price(f[17]),
            depth=depth,
        )
    if code == OI:
        return DhanPacket(code, segment, security_id, oi=f[4])
    if code == PREV_CLOSE:
        return DhanPacket(code, segment, security_id, prev_close=clean_price(f[4]), prev_oi=f[5])
    if code == DISCONNECT:
        return DhanPacket(code, segment, security_id, error_code=f[4])
    return DhanPacket(code, segment, security_id)  # MARKET_STATUS: header only
