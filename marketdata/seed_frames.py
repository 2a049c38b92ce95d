"""The seed service's WebSocket framing, as its React front end reads it (pure functions, no I/O).

Client frames are JSON text with an INTEGER ``message_type``: ``SUBSCRIBE`` (1)
``{"channel": "<symbol>", "exchange_id"?, "exchange_code"?}`` and ``UNSUBSCRIBE`` (2). The server
answers JSON text frames (``SNAPSHOT`` 10, ``INFO`` 100, ``ERROR`` 101) and streams the live
updates as BINARY frames, all fields big-endian:

====================  ====  ==========  ===============================================
byte offset           size  type        field
====================  ====  ==========  ===============================================
0 .. L-1              L     UTF-8       symbol (the channel string the client subscribed)
L                     1     ``0x00``    terminator
L+1                   8     int64       timestamp, Unix epoch milliseconds
L+9                   4     float32     price (last traded)
L+13                  8     uint64      volume: cumulative day volume (0 when unknown)
L+21                  8     uint64      size: volume delta since the previous update (0 first)
====================  ====  ==========  ===============================================

so an update frame is ``L + 29`` bytes. The front end finds the first ``0x00`` and dispatches on
the number of bytes after it: 28 is an update, 36 the (never sent by the seed) binary snapshot
(int64 ts, float32 open, high, low, close, prev_close, uint64 volume), anything else is dropped.

The live update's head (everything but ``size``) is the same for every client of one symbol
string, so it is built once (``update_head``) and each connection appends its own ``size``
(``pack_size``).
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from dataclasses import dataclass

import orjson

SUBSCRIBE = 1
UNSUBSCRIBE = 2
SNAPSHOT = 10
UPDATE = 11
INFO = 100
ERROR = 101

UNKNOWN = -1  # the seed's "unknown" for prev_close (ltp and open are sent as 0, see snapshot_text)
UPDATE_TAIL_BYTES = 28  # after the symbol's NUL
SNAPSHOT_TAIL_BYTES = 36
_HEAD = struct.Struct(">qfQ")  # ts ms, price, cumulative volume
_SIZE = struct.Struct(">Q")
_SNAPSHOT = struct.Struct(">qfffffQ")  # ts ms, open, high, low, close, prev_close, volume
_FLOAT32_MAX = 3.4028234663852886e38
_UINT64_MAX = 2**64 - 1
_MAX_SAFE_MS = 2**53  # the front end converts the int64 with Number()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class SeedUpdate:
    """A decoded binary update frame."""

    symbol: str
    ts: int
    price: float
    volume: int
    size: int


@dataclass(frozen=True, slots=True)
class SeedBinarySnapshot:
    """A decoded binary snapshot frame (the format the front end reads; we send JSON snapshots)."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    prev_close: float
    volume: int


def is_seed_message(data: object) -> bool:
    """Whether a decoded client frame speaks the seed protocol: a JSON object with an integer ``message_type``."""
    if not isinstance(data, dict):
        return False
    kind = data.get("message_type")
    return isinstance(kind, int) and not isinstance(kind, bool)


# --- JSON text frames (server -> client) --------------------------------------------------------
def _number(value) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def snapshot_text(symbol: str, *, ltp=None, open=None, prev_close=None) -> str:
    """The JSON snapshot (type 10) sent right after an accepted SUBSCRIBE.

    Unknown values: ``ltp`` and ``open`` go out as 0 and ``prev_close`` as -1. The front end shows
    ``--`` for those; with all three at -1 it would show the text "-1.00" as the price.
    """
    ltp, open_, prev = _number(ltp), _number(open), _number(prev_close)
    return orjson.dumps(
        {
            "message_type": SNAPSHOT,
            "symbol": symbol,
            "prev_close": UNKNOWN if prev is None else prev,
            "ltp": 0 if ltp is None else ltp,
            "open": 0 if open_ is None else open_,
        }
    ).decode()


def info_text(message: str) -> str:
    """An INFO (100) frame, e.g. ``Unsubscribed from AAPL``."""
    return orjson.dumps({"message_type": INFO, "message": message}).decode()


def error_text(message: str, channel: str | None = None) -> str:
    """An ERROR (101) frame; ``channel`` names the symbol string it is about, when there is one."""
    data = {"message_type": ERROR, "message": message}
    if channel is not None:
        data["channel"] = channel
    return orjson.dumps(data).decode()


# --- binary frames --------------------------------------------------------------------------------
def symbol_bytes(symbol: str) -> bytes:
    """The UTF-8 symbol and its NUL terminator; a symbol holding a NUL cannot be framed (ValueError)."""
    if "\x00" in symbol:
        raise ValueError("a seed symbol must not contain a NUL character")
    return symbol.encode() + b"\x00"


def _float32(value: float) -> float:
    """``value`` as struct's ``>f`` takes it: beyond float32's range it becomes +-inf instead of raising."""
    if abs(value) > _FLOAT32_MAX and math.isfinite(value):
        return math.copysign(math.inf, value)
    return value


def _uint64(value: int) -> int:
    return min(max(int(value), 0), _UINT64_MAX)


def update_head(symbol: str, ts_ms: int, price: float, volume: int) -> bytes:
    """An update frame without its last 8 bytes (``size``): ``symbol 0x00 ts price volume``."""
    ts = min(max(int(ts_ms), -_MAX_SAFE_MS), _MAX_SAFE_MS)
    return symbol_bytes(symbol) + _HEAD.pack(ts, _float32(float(price)), _uint64(volume))


def pack_size(size: int) -> bytes:
    """The last 8 bytes of an update frame (negative sizes are 0)."""
    return _SIZE.pack(_uint64(size))


def encode_update(symbol: str, ts_ms: int, price: float, volume: int, size: int) -> bytes:
    """A whole binary update frame (``L + 29`` bytes)."""
    return update_head(symbol, ts_ms, price, volume) + pack_size(size)


def encode_binary_snapshot(
    symbol: str,
    ts_ms: int,
    *,
    open: float,
    high: float,
    low: float,
    close: float,
    prev_close: float = UNKNOWN,
    volume: int = 0,
) -> bytes:
    """A binary snapshot frame (``L + 37`` bytes): the front end reads it, the seed never sends it."""
    ts = min(max(int(ts_ms), -_MAX_SAFE_MS), _MAX_SAFE_MS)
    prices = (_float32(float(v)) for v in (open, high, low, close, prev_close))
    return symbol_bytes(symbol) + _SNAPSHOT.pack(ts, *prices, _uint64(volume))


def decode_binary(frame: bytes) -> SeedUpdate | SeedBinarySnapshot | None:
    """Decode a binary frame as the front end does; None where it would drop the frame."""
    nul = frame.find(b"\x00")
    if nul < 0:
        return None
    symbol = frame[:nul].decode("utf-8", errors="replace")
    tail = frame[nul + 1 :]
    if len(tail) == UPDATE_TAIL_BYTES:
        ts, price, volume = _HEAD.unpack_from(tail)
        (size,) = _SIZE.unpack_from(tail, _HEAD.size)
        return SeedUpdate(symbol, ts, price, volume, size)
    if len(tail) == SNAPSHOT_TAIL_BYTES:
        return SeedBinarySnapshot(symbol, *_SNAPSHOT.unpack(tail))
    return None


# --- our live updates to the seed's fields ----------------------------------------------------------
def iso_to_ms(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 instant (``2024-05-01T09:15:00.123Z``), exactly."""
    instant = dt.datetime.fromisoformat(text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    return (instant - _EPOCH) // _MS


def quote_update_fields(text: str) -> tuple[int, float, int] | None:
    """``(ts ms, last price, cumulative volume)`` of a live quote update's JSON (``protocol.quote_payload``).

    None when the text is not a quote update with a price and a timestamp (a bar, garbage).
    """
    try:
        data = orjson.loads(text)
        if data.get("message_type") not in ("data", "snapshot"):
            return None
        price = data.get("close")
        stamp = data.get("timestamp")
        if not isinstance(price, (int, float)) or isinstance(price, bool) or not isinstance(stamp, str):
            return None
        volume = data.get("volume")
        volume = int(volume) if isinstance(volume, (int, float)) and not isinstance(volume, bool) else 0
        return iso_to_ms(stamp), float(price), max(volume, 0)
    except (orjson.JSONDecodeError, AttributeError, ValueError, OverflowError):
        return None
