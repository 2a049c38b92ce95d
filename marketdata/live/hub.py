"""The per-process fan-out hub between the channel layer and the ``/ws`` connections.

Instead of one channel-layer group membership per connection and instrument, the hub joins
each group (``quote.{id}``, ``bar1m.{id}``) once per process and hands every message's text
to the local connections subscribed to it. With channels_redis' pub/sub layer that is one
Redis SUBSCRIBE per instrument per process, and one deserialization per message per process,
however many browsers watch the instrument.

The engine's messages (``{"type": "market.message", "group": ..., "text": ...}``) name their
group, so the hub has ONE channel name, joined to every group it follows, and ONE reader task
that dispatches each message by its ``group``: no task per instrument, and a burst across many
instruments is drained in one pass instead of one task wake-up per message. The reader never
awaits a client: it only drops the text into each subscriber's bounded outbox
(``Subscriber.offer``), so one slow browser cannot delay the others.

With channels_redis' pub/sub layer the hub does not go through the layer to receive: it
SUBSCRIBEs to the layer's own group channel names (``{prefix}__group__{group}``) on a
connection of its own and parses the pushed messages straight off the socket
(``RedisPubSubSource``), dispatching each read's worth of messages in one callback. Through
the layer, every message costs a ``get_message`` round of awaits in the layer's receive task,
a queue hop and a wake-up of the reader: under load, when every event-loop turn is long
(a thousand connections sending), that path took a handful of messages per turn and fell
seconds behind the publisher. Other layers (the in-memory one of the embedded mode) are read
through ``layer.receive`` as before.

One hub per event loop (the ASGI server runs one loop per process; the channel layer and
the Redis clients are bound to a loop too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from marketdata.live.store import TickStore, get_tick_store

logger = logging.getLogger(__name__)

BAR_GROUP_PREFIX = "bar1m."
# The channel layers forget memberships older than their ``group_expiry`` (a day by
# default); a hub lives as long as its process, so it renews them well before that.
GROUP_REFRESH_S = 3600.0
# Snapshot reads in flight at once per process: redis-py's pool refuses a 101st connection
# (MaxConnectionsError) instead of waiting, and a thousand dashboards reconnecting at once
# would each read their snapshot at the same moment.
SNAPSHOT_READS = 16
_TIMESTAMP = '"timestamp":"'


class Subscriber(Protocol):
    """Something that takes live messages without ever blocking (a connection's outbox)."""

    def offer(self, key: str, text: str) -> None: ...


class Watched(Protocol):
    """A connection the hub checks for being stuck."""

    def check_stuck(self, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveInstrument:
    """What a subscription needs to know about an instrument."""

    instrument_id: int
    symbol: str
    exchange: str


@dataclass(frozen=True, slots=True)
class ResolveError:
    """Why a channel's symbol could not be resolved (``code`` is the protocol's error code)."""

    code: str
    message: str


def conflation_key(group: str, text: str) -> str:
    """The outbox key of a message: its group, and for bars also the bar's minute.

    Quote updates replace each other. Bar updates replace each other within a minute only:
    a closed bar must not be replaced by the next minute's first update. The minute is read
    with a substring search over the engine's compact JSON, not by parsing it.
    """
    if not group.startswith(BAR_GROUP_PREFIX):
        return group
    at = text.find(_TIMESTAMP)
    if at < 0:
        return group
    start = at + len(_TIMESTAMP)
    return f"{group}@{text[start : text.find('"', start)]}"


class _Route:
    """One joined group: its local subscribers and whether the layer subscription is in place."""

    __slots__ = ("bars", "group", "joining", "members", "opened")

    def __init__(self, group: str) -> None:
        self.group = group
        self.bars = group.startswith(BAR_GROUP_PREFIX)
        self.members: set[Subscriber] = set()
        self.joining = 0  # joins waiting for the layer subscription; they keep the route alive
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()


class SymbolResolver:
    """Channel symbols (``AAPL``, ``NSE:RELIANCE``) to instruments, cached for a short time.

    Subscribe storms (a thousand dashboards reconnecting at once) hit the cache; names not
    cached yet are looked up once even when many connections ask at the same moment.
    Unknown names are cached too, so a client repeating a bad name does not reach the database.
    """

    def __init__(self, *, ttl_s: float, max_entries: int = 20_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, LiveInstrument | ResolveError]] = {}
        self._inflight: dict[str, asyncio.Future] = {}

    async def resolve_many(self, names: Iterable[str]) -> dict[str, LiveInstrument | ResolveError]:
        """Resolve every name; a database failure raises (the caller reports it to the client)."""
        now = time.monotonic()
        out: dict[str, LiveInstrument | ResolveError] = {}
        waiting: dict[str, asyncio.Future] = {}
        fetch: list[str] = []
        for name in dict.fromkeys(names):
            hit = self._cache.get(name)
            if hit is not None and hit[0] > now:
                out[name] = hit[1]
            elif name in self._inflight:
                waiting[name] = self._inflight[name]
            else:
                fetch.append(name)
        if fetch:
            loop = asyncio.get_running_loop()
            futures = {name: loop.create_future() for name in fetch}
            self._inflight.update(futures)
            try:
                found = await database_sync_to_async(resolve_symbols)(fetch)
            except BaseException as exc:
                for future in futures.values():
                    future.set_exception(exc)
                    future.exception()  # retrieved here, so nobody is warned about it
                raise
            finally:
                for name in fetch:
                    self._inflight.pop(name, None)
            expires = time.monotonic() + self.ttl_s
            if len(self._cache) + len(found) > self.max_entries:
                self._cache.clear()
            for name, result in found.items():
                self._cache[name] = (expires, result)
                futures[name].set_result(result)
            out.update(found)
        for name, future in waiting.items():
            out[name] = await future
        return out


def resolve_symbols(names: list[str]) -> dict[str, LiveInstrument | ResolveError]:
    """Each name resolved to an instrument or a ``ResolveError`` (sync: database queries)."""
    from marketdata.selectors import AmbiguousSymbolError, InstrumentNotFoundError, instrument_for_symbol

    out: dict[str, LiveInstrument | ResolveError] = {}
    for name in names:
        try:
            instrument = instrument_for_symbol(symbol=name)
        except AmbiguousSymbolError as exc:
            out[name] = ResolveError(
                "ambiguous_symbol",
                f"'{name}' is listed on several exchanges ({', '.join(exc.exchanges)}); "
                f"subscribe to '{exc.exchanges[0]}:{exc.symbol}' instead.",
            )
        except InstrumentNotFoundError:
            out[name] = ResolveError("unknown_symbol", f"Unknown symbol '{name}'.")
        else:
            out[name] = LiveInstrument(instrument.pk, instrument.symbol, instrument.exchange.code)
    return out


# --- reading channels_redis' pub/sub channels directly ------------------------------------------
SUBSCRIBE_TIMEOUT_S = 10.0
RECONNECT_MAX_S = 5.0
_MESSAGE_HEAD = b"*3\r\n$7\r\nmessage\r\n$"


class RespError(Exception):
    """An error reply from Redis."""


def encode_command(*args: str | bytes) -> bytes:
    """A RESP2 command array."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse_reply(buf: bytes | bytearray, pos: int) -> tuple[object, int]:
    """``(value, position after it)`` of the RESP2 value at ``pos``; the position is -1 when incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None, -1
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if stop + 2 > len(buf):
            return None, -1
        return bytes(buf[end + 2 : stop]), stop + 2
    if kind == 0x2A:  # * array
        count = int(line)
        pos = end + 2
        items = []
        for _ in range(max(count, 0)):
            item, pos = parse_reply(buf, pos)
            if pos < 0:
                return None, -1
            items.append(item)
        return items, pos
    if kind == 0x3A:  # : integer
        return int(line), end + 2
    if kind == 0x2B:  # + simple string
        return line, end + 2
    if kind == 0x2D:  # - error
        return RespError(line.decode(errors="replace")), end + 2
    raise ValueError(f"unexpected RESP type byte {kind!r}")


class _PubSubProtocol(asyncio.Protocol):
    """One subscriber connection: writes commands, parses every complete push in ``data_received``."""

    def __init__(self, owner: _ShardSubscriber) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.replies: deque[asyncio.Future] = deque()  # AUTH and other plain replies, in order
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.lost = True
        while self.replies:
            future = self.replies.popleft()
            if not future.done():
                future.set_exception(ConnectionError("Redis connection lost"))
        self.owner.on_lost(self, exc)

    def send(self, *args: str | bytes) -> None:
        self.transport.write(encode_command(*args))

    def request(self, *args: str | bytes) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.replies.append(future)
        self.send(*args)
        return future

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        size = len(buf)
        on_message = self.owner.source.on_message
        head = _MESSAGE_HEAD
        skip = len(head)
        try:
            while pos < size:
                if buf.startswith(head, pos):
                    # The hot path: *3 $7 message $<n> channel $<m> payload, parsed in place.
                    at = pos + skip
                    end = buf.find(b"\r\n", at)
                    if end < 0:
                        break
                    start = end + 2
                    stop = start + int(buf[at:end])
                    if stop + 3 > size:
                        break
                    end = buf.find(b"\r\n", stop + 3)
                    if end < 0:
                        break
                    data_start = end + 2
                    data_stop = data_start + int(buf[stop + 3 : end])
                    if data_stop + 2 > size:
                        break
                    pos = data_stop + 2
                    on_message(bytes(buf[start:stop]), bytes(buf[data_start:data_stop]))
                    continue
                item, after = parse_reply(buf, pos)
                if after < 0:
                    break
                pos = after
                self._other(item)
        except Exception:
            logger.exception("unreadable data from Redis; reconnecting")
            self.transport.abort()
            return
        if pos:
            del buf[:pos]

    def _other(self, item) -> None:
        if isinstance(item, list) and item and isinstance(item[0], bytes):
            kind = item[0]
            if kind in (b"subscribe", b"unsubscribe") and len(item) > 1:
                self.owner.on_ack(kind, item[1])
            return  # pong, pmessage: nothing to do
        if self.replies:
            future = self.replies.popleft()
            if not future.done():
                if isinstance(item, RespError):
                    future.set_exception(item)
                else:
                    future.set_result(item)
        elif isinstance(item, RespError):
            logger.warning("Redis answered the hub's subscriber with an error: %s", item)


class _ShardSubscriber:
    """The subscriber connection to one Redis server of the layer, reconnecting and resubscribing."""

    def __init__(self, host: dict, source: RedisPubSubSource) -> None:
        address = host["address"]
        parts = urlsplit(address)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self.source = source
        self.channels: set[bytes] = set()  # wanted: resubscribed after a reconnect
        self.protocol: _PubSubProtocol | None = None
        self._acks: dict[bytes, deque[asyncio.Future]] = {}
        self._connecting: asyncio.Task | None = None
        self._closed = False

    @staticmethod
    def supports(host: dict) -> bool:
        address = host.get("address")
        return (
            isinstance(address, str)
            and urlsplit(address).scheme in ("redis", "rediss")
            and set(host) == {"address"}  # extra connection options: leave them to the layer
        )

    async def _ensure(self) -> _PubSubProtocol:
        if self.protocol is not None and not self.protocol.lost:
            return self.protocol
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect(), name="hub-redis-connect")
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _PubSubProtocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            transport, protocol = await loop.create_connection(
                lambda: _PubSubProtocol(self), self.host, self.port, ssl=self.ssl
            )
            if self.password is not None:
                args = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
                try:
                    await protocol.request(*args)
                except BaseException:
                    transport.close()
                    raise
        self.protocol = protocol
        if self.channels:
            protocol.send("SUBSCRIBE", *self.channels)
        return protocol

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe and wait for Redis to confirm (raises when Redis cannot be reached)."""
        self.channels.add(channel)
        try:
            protocol = await self._ensure()
            future = asyncio.get_running_loop().create_future()
            self._acks.setdefault(channel, deque()).append(future)
            protocol.send("SUBSCRIBE", channel)
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await future
        except BaseException:
            self.channels.discard(channel)
            raise

    def unsubscribe(self, channel: bytes) -> None:
        self.channels.discard(channel)
        if self.protocol is not None and not self.protocol.lost:
            self.protocol.send("UNSUBSCRIBE", channel)

    def on_ack(self, kind: bytes, channel: bytes) -> None:
        if kind != b"subscribe":
            return
        waiting = self._acks.get(channel)
        if waiting:
            future = waiting.popleft()
            if not waiting:
                del self._acks[channel]
            if not future.done():
                future.set_result(None)

    def on_lost(self, protocol: _PubSubProtocol, exc) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        for waiting in self._acks.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(ConnectionError("Redis connection lost"))
        self._acks.clear()
        if not self._closed:
            logger.warning("the hub's Redis subscriber connection was lost (%r); reconnecting", exc)
            self.source.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._closed and self.channels and (self.protocol is None or self.protocol.lost):
            try:
                await self._ensure()
                return
            except Exception as exc:
                logger.warning("reconnecting the hub's Redis subscriber failed: %r", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


class RedisPubSubSource:
    """Subscribes to channels_redis pub/sub group channels itself and hands each message to ``dispatch``.

    Uses the layer's own channel names, shard choice and serializer (so encryption or a
    random prefix configured on the layer still work); ``supported`` says whether the layer
    is one it understands, else the hub reads through ``layer.receive``.
    """

    def __init__(self, layer, dispatch: Callable[[str, str], None], spawn: Callable) -> None:
        self.loop_layer = layer._get_layer()
        self.deserialize = layer.deserialize
        self.dispatch = dispatch
        self.spawn = spawn
        self.groups: dict[bytes, str] = {}  # channel name -> group
        self.shards: dict[int, _ShardSubscriber] = {}

    @staticmethod
    def supported(layer) -> bool:
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
        except ImportError:
            return False
        if not isinstance(layer, RedisPubSubChannelLayer):
            return False
        if not all(hasattr(RedisPubSubLoopLayer, n) for n in ("_get_group_channel_name", "_get_shard")):
            return False
        try:
            shards = layer._get_layer()._shards
            return all(_ShardSubscriber.supports(shard.host) for shard in shards)
        except Exception:
            return False

    def _channel(self, group: str) -> tuple[bytes, _ShardSubscriber]:
        name = self.loop_layer._get_group_channel_name(group)
        shard = self.loop_layer._get_shard(name)
        subscriber = self.shards.get(id(shard))
        if subscriber is None:
            subscriber = self.shards[id(shard)] = _ShardSubscriber(shard.host, self)
        return name.encode(), subscriber

    async def subscribe(self, group: str) -> None:
        channel, subscriber = self._channel(group)
        self.groups[channel] = group
        await subscriber.subscribe(channel)

    def unsubscribe(self, group: str) -> None:
        channel, subscriber = self._channel(group)
        self.groups.pop(channel, None)
        subscriber.unsubscribe(channel)

    def on_message(self, channel: bytes, data: bytes) -> None:
        group = self.groups.get(channel)
        if group is None:
            return  # left a moment ago
        try:
            message = self.deserialize(data)
        except Exception:
            logger.warning("undecodable message on %r", channel, exc_info=True)
            return
        text = message.get("text") if isinstance(message, dict) else None
        if text is not None:
            self.dispatch(group, text)

    async def close(self) -> None:
        for subscriber in list(self.shards.values()):
            await subscriber.close()
        self.shards.clear()
        self.groups.clear()


class FanoutHub:
    """Joins channel-layer groups once per process and fans their messages out to local subscribers."""

    def __init__(self, layer, *, resolver: SymbolResolver | None = None) -> None:
        self.layer = layer
        self.routes: dict[str, _Route] = {}
        self.resolver = resolver or SymbolResolver(ttl_s=float(getattr(settings, "WS_SYMBOL_CACHE_TTL_S", 30.0)))
        self.connections: set[Watched] = set()
        self.messages = 0  # received from the layer, for status pages and benchmarks
        self.channel: str | None = None  # the one layer channel, joined to every group followed
        self._channel_ready: asyncio.Future | None = None
        self._reader: asyncio.Task | None = None
        # group -> its pending group_discard: a re-join waits for it, so the discard cannot land last
        self._discarding: dict[str, asyncio.Task] = {}
        self._store: TickStore | None = None
        self._background: set[asyncio.Task] = set()
        self._watchdog: asyncio.Task | None = None
        self._refresher: asyncio.Task | None = None
        self._snapshot_gate = asyncio.Semaphore(SNAPSHOT_READS)
        self.direct: RedisPubSubSource | None = None
        if RedisPubSubSource.supported(layer):
            self.direct = RedisPubSubSource(layer, self._dispatch, self.spawn)

    @property
    def store(self) -> TickStore:
        """The tick store client shared by this loop's connections (snapshots)."""
        if self._store is None:
            self._store = get_tick_store()
        return self._store

    async def latest_quotes(self, instrument_ids: list[int]) -> dict:
        """The tick store's latest quotes, with at most ``SNAPSHOT_READS`` reads in flight."""
        async with self._snapshot_gate:
            return await self.store.latest_quotes(instrument_ids)

    # --- subscriptions ----------------------------------------------------------------------
    async def _ensure_channel(self) -> str:
        """The hub's layer channel, created (with its reader task) on first use."""
        if self._channel_ready is None:
            ready = self._channel_ready = asyncio.get_running_loop().create_future()
            try:
                self.channel = await self.layer.new_channel()
            except BaseException as exc:
                self._channel_ready = None
                ready.set_exception(exc)
                ready.exception()  # retrieved here; the waiters get it from their await
                raise
            self._reader = asyncio.create_task(self._read(self.channel), name="hub-reader")
            ready.set_result(self.channel)
        return await asyncio.shield(self._channel_ready)

    async def join(self, group: str, member: Subscriber) -> None:
        """Deliver ``group``'s messages to ``member`` from now on; the first member joins the layer group.

        ``member`` is added at the very end, once the layer subscription is in place, and
        this returns without yielding after that: whatever the caller queues right after the
        ``await`` (the "Subscribed to" reply) goes out before the group's first update.
        Raises when the channel layer cannot be reached; ``member`` is then not subscribed.
        """
        route = self.routes.get(group)
        if route is None:
            route = self.routes[group] = _Route(group)
            route.joining += 1
            try:
                if self.direct is not None:
                    await self.direct.subscribe(group)
                else:
                    channel = await self._ensure_channel()
                    discarding = self._discarding.get(group)
                    if discarding is not None:
                        with contextlib.suppress(BaseException):
                            await asyncio.shield(discarding)
                    await self.layer.group_add(group, channel)
            except BaseException as exc:
                route.joining -= 1
                if self.routes.get(group) is route:
                    del self.routes[group]
                    self._discard(group)  # the group_add may have gone through before the failure
                route.opened.set_exception(exc)
                route.opened.exception()
                raise
            route.opened.set_result(None)
            route.joining -= 1
        elif not route.opened.done():
            route.joining += 1
            try:
                await asyncio.shield(route.opened)
            finally:
                route.joining -= 1
        route.members.add(member)
        self._ensure_background()

    def leave(self, group: str, member: Subscriber) -> None:
        """Stop delivering ``group`` to ``member``; the last member out leaves the layer group."""
        route = self.routes.get(group)
        if route is None:
            return
        route.members.discard(member)
        if not route.members and not route.joining:
            del self.routes[group]
            self._discard(group)

    def _discard(self, group: str) -> None:
        """Leave the layer group in the background, after any earlier discard of it."""
        if self.direct is not None:
            self.direct.unsubscribe(group)  # ordered after any SUBSCRIBE on the same connection
            return
        previous = self._discarding.get(group)

        async def discard() -> None:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await previous
            try:
                if group not in self.routes and self.channel is not None:
                    await self.layer.group_discard(group, self.channel)
            except Exception:
                logger.warning("leaving channel-layer group %s failed", group, exc_info=True)
            finally:
                if self._discarding.get(group) is task:
                    del self._discarding[group]

        task = asyncio.create_task(discard(), name=f"hub-discard-{group}")
        self._discarding[group] = task

    async def _read(self, channel: str) -> None:
        # The hot path: no parsing, no awaiting clients; one receive per message, dispatched
        # by the group the engine wrote into it.
        receive = self.layer.receive
        dispatch = self._dispatch
        while True:
            try:
                message = await receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading the channel layer failed; retrying")
                await asyncio.sleep(0.5)
                continue
            group = message.get("group")
            text = message.get("text")
            if group is not None and text is not None:
                dispatch(group, text)

    def _dispatch(self, group: str, text: str) -> None:
        """Hand one update to the group's local subscribers (never blocks, never awaits)."""
        route = self.routes.get(group)
        if route is None:
            return  # a group left a moment ago
        self.messages += 1
        key = conflation_key(group, text) if route.bars else group
        for member in route.members:
            member.offer(key, text)

    def spawn(self, coro) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- stuck connections and membership upkeep ------------------------------------------------
    def register(self, connection: Watched) -> None:
        """Have ``connection.check_stuck`` called about once a second while it is open."""
        self.connections.add(connection)
        self._ensure_background()

    def unregister(self, connection: Watched) -> None:
        self.connections.discard(connection)

    def _ensure_background(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch(), name="hub-watchdog")
        if self.direct is None and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._refresh(), name="hub-refresh")

    async def _watch(self) -> None:
        interval = min(1.0, float(getattr(settings, "WS_STUCK_TIMEOUT_S", 10.0)) / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                try:
                    connection.check_stuck(now)
                except Exception:
                    logger.exception("checking a websocket connection failed")

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH_S)
            for route in list(self.routes.values()):
                if self.channel is not None and route.opened.done() and not route.opened.exception():
                    try:
                        await self.layer.group_add(route.group, self.channel)
                    except Exception:
                        logger.warning("renewing channel-layer group %s failed", route.group, exc_info=True)

    async def aclose(self) -> None:
        """Leave every group and stop the hub's tasks (tests, shutdown)."""
        routes, self.routes = list(self.routes.values()), {}
        if self.direct is not None:
            await self.direct.close()
        for route in routes:
            with contextlib.suppress(BaseException):
                await route.opened
            if self.channel is not None:
                try:
                    await self.layer.group_discard(route.group, self.channel)
                except Exception:
                    logger.warning("leaving channel-layer group %s failed", route.group, exc_info=True)
        for task in list(self._discarding.values()):
            with contextlib.suppress(BaseException):
                await task
        for task in (self._reader, self._watchdog, self._refresher, *self._background):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._watchdog = self._refresher = self._reader = None
        self._channel_ready = None
        self.channel = None
        if self._store is not None:
            await self._store.close()
            self._store = None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FanoutHub] = weakref.WeakKeyDictionary()


def get_hub() -> FanoutHub:
    """This event loop's hub, created on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        layer = get_channel_layer()
        if layer is None:
            raise ImproperlyConfigured("The live feed needs CHANNEL_LAYERS to be configured.")
        hub = _hubs[loop] = FanoutHub(layer)
    return hub


async def close_hub() -> None:
    """Close this loop's hub, if it has one (the next ``get_hub`` makes a fresh one)."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.aclose()
