"""The ``/ws`` protocol's pieces that need no connection: limits, frames, channel names, replies.

Limits (settings, with these defaults):

- ``WS_MAX_SUBSCRIPTIONS`` = 500 channels per connection
- ``WS_MAX_FRAME_BYTES`` = 65536 bytes per client frame
- ``WS_MAX_MESSAGES_PER_SECOND`` = 50 client frames per second (token bucket, burst of one second)
- ``WS_AUTH_TIMEOUT_S`` = 10 seconds to send an ``auth`` message when the handshake had no credentials
- ``WS_SEND_QUEUE`` = 1000 channels with an update waiting to be sent (replies: twice that)
- ``WS_STUCK_TIMEOUT_S`` = 10 seconds without progress before a client is disconnected (4408)
- ``WS_TRANSPORT_BUFFER_BYTES`` = 262144 bytes daphne may hold for a client before we stop sending
- ``WS_MAX_NAMES_PER_FRAME`` = 100 channel names in one subscribe/unsubscribe frame
- ``WS_AUTH_RECHECK_S`` = 2 seconds between re-checks of connected users (see ``ws_auth``)
- ``WS_SYMBOL_CACHE_TTL_S`` = 30 seconds a symbol lookup is cached (see ``hub.SymbolResolver``)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson
from django.conf import settings

MAX_CHANNEL_CHARS = 100
MAX_SEQ = 2**53 - 1  # what a JavaScript client can hold exactly
MAX_BATCH_MS = 1000
OPTIONS = ("batch_ms",)
_BATCH_MS_TEXT = f"batch_ms must be an integer from 0 to {MAX_BATCH_MS} (milliseconds; 0 sends one message per frame)."
_INTERVAL = re.compile(r"\d+[smhdwSMHDW]")
PONG = '{"message_type":"pong"}'


@dataclass(frozen=True, slots=True)
class WsLimits:
    """The connection limits, read from settings when a connection opens."""

    max_subscriptions: int = 500
    max_frame_bytes: int = 65536
    messages_per_second: float = 50.0
    auth_timeout_s: float = 10.0
    send_queue: int = 1000
    stuck_timeout_s: float = 10.0
    transport_buffer_bytes: int = 256 * 1024
    max_names_per_frame: int = 100

    @classmethod
    def from_settings(cls) -> WsLimits:
        d = cls()  # the defaults (slots leave no class attributes to read them from)
        return cls(
            max_subscriptions=int(getattr(settings, "WS_MAX_SUBSCRIPTIONS", d.max_subscriptions)),
            max_frame_bytes=int(getattr(settings, "WS_MAX_FRAME_BYTES", d.max_frame_bytes)),
            messages_per_second=float(getattr(settings, "WS_MAX_MESSAGES_PER_SECOND", d.messages_per_second)),
            auth_timeout_s=float(getattr(settings, "WS_AUTH_TIMEOUT_S", d.auth_timeout_s)),
            send_queue=int(getattr(settings, "WS_SEND_QUEUE", d.send_queue)),
            stuck_timeout_s=float(getattr(settings, "WS_STUCK_TIMEOUT_S", d.stuck_timeout_s)),
            transport_buffer_bytes=int(getattr(settings, "WS_TRANSPORT_BUFFER_BYTES", d.transport_buffer_bytes)),
            max_names_per_frame=int(getattr(settings, "WS_MAX_NAMES_PER_FRAME", d.max_names_per_frame)),
        )


class TokenBucket:
    """``rate`` events per second on average, bursts up to ``rate``."""

    __slots__ = ("at", "rate", "tokens")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def charge(self, n: float) -> None:
        """Spend ``n`` more tokens (work a frame caused); the debt is at most ten seconds' worth."""
        self.take_none()
        self.tokens = max(self.tokens - n, -10 * self.rate)

    def take_none(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait_s(self) -> float:
        """Seconds until ``take`` can succeed (at least a millisecond)."""
        return max((1.0 - self.tokens) / self.rate, 0.001) if self.rate > 0 else 1.0


class ProtocolError(Exception):
    """A client frame we answer with an ``error`` message (the connection stays open)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def message(message_type: str, **fields) -> str:
    return orjson.dumps({"message_type": message_type, **fields}).decode()


def error_text(code: str, text: str, channel: str | None = None) -> str:
    if channel is None:
        return message("error", code=code, message=text)
    return message("error", code=code, message=text, channel=channel)


def decode_frame(event: dict, max_bytes: int) -> dict:
    """The JSON object of a ``websocket.receive`` event, or the ``ProtocolError`` it deserves."""
    text = event.get("text")
    if text is None:
        raise ProtocolError("binary_not_supported", "Send JSON text frames; binary frames are not supported.")
    # Characters before bytes: encoding is only needed when the text might be too long.
    if len(text) > max_bytes or (len(text) * 4 > max_bytes and len(text.encode()) > max_bytes):
        raise ProtocolError("frame_too_large", f"A message may have at most {max_bytes} bytes.")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("invalid_json", "The message is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_json", "The message must be a JSON object with a message_type.")
    return data


def parse_channel(name: str) -> tuple[str, bool]:
    """``(symbol part, wants 1m bars)`` of ``AAPL``, ``NSE:RELIANCE``, ``AAPL@1m``."""
    base, at, suffix = name.rpartition("@")
    if at and base:
        if suffix.lower() == "1m":
            return base, True
        if _INTERVAL.fullmatch(suffix):
            raise ProtocolError("unsupported_interval", f"Only 1-minute bars stream live ('{base}@1m'), not '{name}'.")
    return name, False


def channel_names(data: dict, max_names: int | None = None) -> list[str]:
    """The channel strings of a subscribe/unsubscribe frame, in order, without duplicates (at most ``max_names``)."""
    if "channels" in data:
        value = data["channels"]
        if not isinstance(value, list):
            raise ProtocolError("invalid_channel", "'channels' must be a list of symbols.")
        if max_names is not None and len(value) > max_names:
            raise ProtocolError("too_many_names", f"At most {max_names} channels in one message.")
    elif "channel" in data:
        value = [data["channel"]]
    else:
        raise ProtocolError("missing_channel", "Give 'channel' (a symbol such as AAPL or NSE:RELIANCE) or 'channels'.")
    names = []
    for item in value:
        if not isinstance(item, str):
            raise ProtocolError("invalid_channel", "A channel is a string such as AAPL or NSE:RELIANCE.")
        item = item.strip()
        if item:
            if len(item) > MAX_CHANNEL_CHARS:
                raise ProtocolError("invalid_channel", f"A channel has at most {MAX_CHANNEL_CHARS} characters.")
            names.append(item)
    if not names:
        raise ProtocolError("missing_channel", "No channel given.")
    return list(dict.fromkeys(names))


def resume_since(data: dict, names: list[str], max_names: int | None = None) -> dict[str, int] | None:
    """The ``since`` of a subscribe frame: channel (one of ``names``) -> last ``seq`` seen; None without one.

    Only quote channels resume: bar channels carry no ``seq``.
    """
    if "since" not in data:
        return None
    value = data["since"]
    if not isinstance(value, dict):
        raise ProtocolError("invalid_since", "'since' must be an object: channel -> last seq seen.")
    if max_names is not None and len(value) > max_names:
        raise ProtocolError("too_many_names", f"At most {max_names} channels in one message.")
    wanted = set(names)
    since: dict[str, int] = {}
    for name, seq in value.items():
        channel = name.strip()
        if channel not in wanted:
            raise ProtocolError(
                "invalid_since", f"'since' names {channel[:MAX_CHANNEL_CHARS]!r}, not a channel of this frame."
            )
        try:
            bars = parse_channel(channel)[1]
        except ProtocolError:
            continue  # the subscription itself answers for a bad channel
        if bars:
            raise ProtocolError("invalid_since", f"Only quote channels resume; {channel} has no seq.")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise ProtocolError("invalid_since", f"'since' of {channel} must be a non-negative integer seq.")
        since[channel] = seq
    return since


def batch_ms_value(value: object) -> int:
    """A ``batch_ms`` option: an integer 0-1000 (a JSON number; ``query_batch_ms`` reads the query's digits)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BATCH_MS:
        raise ProtocolError("invalid_option", _BATCH_MS_TEXT)
    return value


def options_batch_ms(data: dict) -> int:
    """The ``batch_ms`` of an ``options`` frame; unknown or missing options are an ``invalid_option``."""
    unknown = sorted(str(k)[:MAX_CHANNEL_CHARS] for k in data if k != "message_type" and k not in OPTIONS)
    if unknown:
        raise ProtocolError(
            "invalid_option", f"Unknown option(s): {', '.join(unknown)}; the options are {', '.join(OPTIONS)}."
        )
    if "batch_ms" not in data:
        raise ProtocolError("invalid_option", "Give batch_ms: " + _BATCH_MS_TEXT)
    return batch_ms_value(data["batch_ms"])


def query_batch_ms(query_string: bytes) -> tuple[int | None, ProtocolError | None]:
    """``(batch_ms, None)`` from the handshake's ``?batch_ms=``, ``(None, None)`` without it, else the error."""
    if b"batch_ms" not in query_string:
        return None, None
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("batch_ms")
    if not values:
        return None, None
    text = values[-1].strip()
    try:
        return batch_ms_value(int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else text), None
    except ProtocolError as exc:
        return None, exc


def batch_ack(batch_ms: int) -> str:
    """The ``info`` answering an ``options`` frame."""
    text = f"Batching every {batch_ms} ms" if batch_ms else "Batching off: one message per frame"
    return message("info", message=text, batch_ms=batch_ms)
