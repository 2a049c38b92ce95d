"""The seed protocol on ``/ws``: what a connection does once its first frame had an integer ``message_type``.

The seed service's React front end speaks it (framing in ``seed_frames``). The consumer
negotiates per connection (see ``consumers.MarketDataConsumer.on_frame``) and hands every
frame of a seed connection to its ``SeedSession``:

- SUBSCRIBE (1) ``{"channel": "<symbol>", "exchange_id"?, "exchange_code"?}`` resolves the symbol
  (``resolve_seed_channel``), answers the JSON snapshot (10) and streams the instrument's live
  quote updates as binary frames carrying the channel string exactly as the client wrote it.
  Subscriptions are reference-counted per channel string: a price widget and a chart showing
  the same symbol each SUBSCRIBE and UNSUBSCRIBE on their own.
- UNSUBSCRIBE (2) answers INFO (100) ``Unsubscribed from <symbol>``.
- Anything else, an unknown symbol, a bad frame: ERROR (101) with a message; the socket stays open.

Fan-out: the session joins the hub's group (``quote.{id}``) with a ``SeedFeed``, which queues
each update under every channel string of this connection that names the instrument, in the
connection's ordinary bounded, conflating outbox. The outbox turns the update into a binary
frame only when it sends it (``SeedEncoder``), so a conflated update is never encoded; the
frame's head (symbol, timestamp, price, volume) is built once per process for each (channel
string, update) (``frame_head``), and each connection adds its 8-byte ``size``: the volume
delta since the update it last sent for that channel (0 on the first).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from core.db import db_sync_to_async
from marketdata import seed_frames
from marketdata.live.hub import LiveInstrument, ResolveError
from marketdata.live.protocol import quote_group
from marketdata.ws_protocol import MAX_CHANNEL_CHARS, ProtocolError

if TYPE_CHECKING:
    from marketdata.live.outbox import Outbox

logger = logging.getLogger(__name__)

MAX_REFS = 1000  # SUBSCRIBEs of one channel string counted per connection (a runaway client stays bounded)
HEAD_CACHE_ENTRIES = 8192  # per generation, see frame_head


# --- per-process frame heads ------------------------------------------------------------------------
class _HeadCache:
    """(channel string, update text) -> (frame head, cumulative volume), two generations.

    The hub hands the same text object to every subscriber, so the key's hash and equality
    cost next to nothing. When the current generation is full it becomes the old one (O(1),
    no scan); an entry found in the old one moves back.
    """

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.current: dict[tuple[str, str], tuple[bytes, int] | None] = {}
        self.old: dict[tuple[str, str], tuple[bytes, int] | None] = {}
        self.built = 0  # heads encoded, for tests and status

    def get(self, name: str, text: str) -> tuple[bytes, int] | None:
        key = (name, text)
        try:
            return self.current[key]
        except KeyError:
            pass
        if key in self.old:
            value = self.old[key]
        else:
            fields = seed_frames.quote_update_fields(text)
            value = None if fields is None else (seed_frames.update_head(name, *fields), fields[2])
            self.built += 1
        if len(self.current) >= self.entries:
            self.old, self.current = self.current, {}
        self.current[key] = value
        return value


frame_heads = _HeadCache(HEAD_CACHE_ENTRIES)


class SeedEncoder:
    """A seed connection's outbox ``encode``: the binary update frame of (channel string, update text)."""

    __slots__ = ("volumes",)

    def __init__(self) -> None:
        self.volumes: dict[str, int] = {}  # channel string -> cumulative volume last sent

    def __call__(self, name: str, text: str) -> bytes | None:
        head = frame_heads.get(name, text)
        if head is None:
            return None
        frame, volume = head
        previous = self.volumes.get(name)
        self.volumes[name] = volume
        size = volume - previous if previous is not None and volume > previous else 0
        return frame + seed_frames.pack_size(size)


class SeedFeed:
    """The hub subscriber of one seed connection: a group's update goes to each channel string naming it."""

    __slots__ = ("names", "outbox")

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.names: dict[str, list[str]] = {}  # group -> channel strings (a group is joined iff present)

    def offer(self, key: str, text: str) -> None:
        names = self.names.get(key)
        if names:
            offer = self.outbox.offer
            for name in names:
                offer(name, text)


# --- resolving a seed channel ------------------------------------------------------------------------
_hint_cache: dict[tuple[object, object], tuple[float, str | None]] = {}


def _exchange_hint(exchange_id, exchange_code) -> str | None:
    """The code of the active exchange the SUBSCRIBE names (by id first, then code), or None (sync: queries)."""
    from exchanges.models import Exchange

    ttl_s = float(getattr(settings, "WS_SYMBOL_CACHE_TTL_S", 30.0))
    # JSON may put anything there: only numbers and strings are hints (and hashable)
    exchange_id = exchange_id if isinstance(exchange_id, (int, str)) else None
    exchange_code = exchange_code if isinstance(exchange_code, str) else None
    key = (exchange_id, exchange_code)
    hit = _hint_cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    code = None
    active = Exchange.objects.filter(is_active=True)
    if isinstance(exchange_id, int) and not isinstance(exchange_id, bool) and 0 < exchange_id < 2**63:
        code = active.filter(pk=exchange_id).values_list("code", flat=True).first()
    elif isinstance(exchange_id, str) and exchange_id.strip().isdecimal() and len(exchange_id) < 19:
        code = active.filter(pk=int(exchange_id)).values_list("code", flat=True).first()
    if (
        code is None
        and isinstance(exchange_code, str)
        and 0 < len(exchange_code.strip()) <= 50
        and "\x00" not in exchange_code
    ):
        code = active.filter(code__iexact=exchange_code.strip()).values_list("code", flat=True).first()
    if len(_hint_cache) > 1000:
        _hint_cache.clear()
    _hint_cache[key] = (time.monotonic() + ttl_s, code)
    return code


def candidate_names(name: str, code: str | None) -> list[str]:
    """The names to resolve for a seed channel, in order (each a name the hub's resolver takes).

    With an exchange (from ``exchange_id``/``exchange_code``): the symbol on that exchange, also
    when the channel already carries it as ``CODE:SYMBOL`` or ``SYMBOL.CODE``. Without one:
    ``EXCHANGE:SYMBOL`` or the bare symbol (``instruments.symbols``), then ``SYMBOL.EXCHANGE``
    (an exact symbol such as ``BRK.B`` wins over that split).
    """
    if code is not None:
        out = [f"{code}:{name}"]
        upper, prefix, suffix = name.upper(), code.upper() + ":", "." + code.upper()
        if upper.startswith(prefix) and len(name) > len(prefix):
            out.append(f"{code}:{name[len(prefix) :]}")
        elif upper.endswith(suffix) and len(name) > len(suffix):
            out.append(f"{code}:{name[: -len(suffix)]}")
        return out
    out = [name]
    base, dot, exchange = name.rpartition(".")
    if dot and base and exchange:
        out.append(f"{exchange}:{base}")
    return out


async def resolve_seed_channel(
    resolver, name: str, exchange_id=None, exchange_code=None
) -> LiveInstrument | ResolveError:
    """The instrument a SUBSCRIBE names, or why not (the first candidate that resolves wins)."""
    code = None
    if isinstance(exchange_id, (int, str)) or isinstance(exchange_code, str):
        code = await db_sync_to_async(_exchange_hint)(exchange_id, exchange_code)
    first_error: ResolveError | None = None
    for candidate in candidate_names(name, code):
        result = (await resolver.resolve_many([candidate]))[candidate]
        if isinstance(result, LiveInstrument):
            return result
        if first_error is None:
            first_error = result
    if first_error is not None and first_error.code == "ambiguous_symbol":
        return ResolveError(
            first_error.code,
            f"{first_error.message} Or send its exchange_id, or write it as SYMBOL.EXCHANGE.",
        )
    where = f" on {code}" if code else ""
    return ResolveError("unknown_symbol", f"Unknown symbol '{name}'{where}.")


# --- the session ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Subscription:
    group: str
    refs: int = 0


class SeedSession:
    """The seed protocol state of one connection (subscriptions by channel string)."""

    def __init__(self, consumer) -> None:
        """``consumer``: the ``consumers.MarketDataConsumer`` of the connection (its hub, outbox, limits, reply)."""
        self.consumer = consumer
        self.hub = consumer.hub
        self.outbox = consumer.outbox
        self.feed = SeedFeed(consumer.outbox)
        self.encoder = SeedEncoder()
        self.outbox.set_batch(0)  # the seed framing is one binary frame per update, whatever ?batch_ms= said
        self.outbox.set_encode(self.encoder)
        self.subscriptions: dict[str, _Subscription] = {}

    def error(self, text: str, channel: str | None = None) -> None:
        self.consumer.reply(seed_frames.error_text(text, channel))

    async def on_message(self, data: dict | None, problem: ProtocolError | None) -> None:
        """One client frame: the decoded JSON object, or the problem that kept it from decoding."""
        if problem is not None:
            self.error(problem.message)
            return
        kind = data.get("message_type")
        try:
            if kind == seed_frames.SUBSCRIBE:
                await self.subscribe(_channel(data), data.get("exchange_id"), data.get("exchange_code"))
            elif kind == seed_frames.UNSUBSCRIBE:
                self.unsubscribe(_channel(data))
            else:
                self.error("Unknown message_type; use 1 (SUBSCRIBE) or 2 (UNSUBSCRIBE).")
        except ProtocolError as exc:
            self.error(exc.message, data.get("channel") if isinstance(data.get("channel"), str) else None)

    async def subscribe(self, name: str, exchange_id=None, exchange_code=None) -> None:
        consumer, hub = self.consumer, self.hub
        current = self.subscriptions.get(name)
        if current is None and len(self.subscriptions) >= consumer.limits.max_subscriptions:
            self.error(
                f"At most {consumer.limits.max_subscriptions} symbols per connection; unsubscribe from some first.",
                name,
            )
            return
        try:
            found = await resolve_seed_channel(hub.resolver, name, exchange_id, exchange_code)
        except Exception:
            logger.exception("resolving a seed websocket channel failed")
            self.error(f"Symbols cannot be looked up right now; subscribe to {name} again later.", name)
            return
        if isinstance(found, ResolveError):
            self.error(found.message, name)
            return
        # The snapshot is read before the join: every update queued after the join is newer.
        quote = await self._quote(found)
        if consumer.closed:
            return
        group = quote_group(found.instrument_id)
        if current is not None and current.group != group:  # the exchange hint now names another listing
            refs = current.refs
            self._drop(name)
            current = None
        else:
            refs = 0 if current is None else current.refs
        if current is None:
            if group not in self.feed.names:
                try:
                    await hub.join(group, self.feed)
                except Exception:
                    logger.exception("joining channel-layer group %s failed", group)
                    self.error(f"Live data for {name} is unavailable right now; try again.", name)
                    return
                if consumer.closed:  # released while we were joining
                    hub.leave(group, self.feed)
                    return
                self.feed.names[group] = [name]
            else:
                self.feed.names[group].append(name)
            current = self.subscriptions[name] = _Subscription(group, refs)
        current.refs = min(current.refs + 1, MAX_REFS)
        # No await since the join returned: the snapshot goes out before any update of the channel.
        if quote is None:
            self.consumer.reply(seed_frames.snapshot_text(name))
        else:
            self.consumer.reply(
                seed_frames.snapshot_text(name, ltp=quote.last, open=quote.open, prev_close=quote.previous_close)
            )

    async def _quote(self, instrument: LiveInstrument):
        try:
            quotes = await self.hub.latest_quotes([instrument.instrument_id])
        except Exception:
            logger.warning("reading a snapshot from the tick store failed", exc_info=True)
            return None
        return quotes.get(instrument.instrument_id)

    def unsubscribe(self, name: str) -> None:
        current = self.subscriptions.get(name)
        if current is not None:
            current.refs -= 1
            if current.refs <= 0:
                self._drop(name)
        self.consumer.reply(seed_frames.info_text(f"Unsubscribed from {name}"))

    def _drop(self, name: str) -> None:
        """Stop streaming ``name`` on this connection; the last name of a group leaves it."""
        current = self.subscriptions.pop(name)
        names = self.feed.names.get(current.group, [])
        if name in names:
            names.remove(name)
        if not names:
            self.feed.names.pop(current.group, None)
            self.hub.leave(current.group, self.feed)
        self.outbox.pending.pop(name, None)
        self.encoder.volumes.pop(name, None)

    def release(self) -> None:
        """Leave every group (the connection is closing; idempotent)."""
        for group in self.feed.names:
            self.hub.leave(group, self.feed)
        self.feed.names.clear()
        self.subscriptions.clear()


def _channel(data: dict) -> str:
    """The ``channel`` of a SUBSCRIBE/UNSUBSCRIBE: the symbol string, exactly as the client wrote it."""
    value = data.get("channel")
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError("missing_channel", 'Give "channel": the symbol, such as AAPL or RELIANCE.NSE.')
    if len(value) > MAX_CHANNEL_CHARS:
        raise ProtocolError("invalid_channel", f"A channel has at most {MAX_CHANNEL_CHARS} characters.")
    if "\x00" in value:
        raise ProtocolError("invalid_channel", "A channel must not contain a NUL character.")
    return value
