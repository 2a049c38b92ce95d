"""The per-process fan-out hub between the channel layer and the ``/ws`` connections.

Instead of one channel-layer group membership per connection and instrument, the hub joins
each group (``quote.{id}``, ``bar1m.{id}``) once per process and hands every message's text
to the local connections subscribed to it. With channels_redis' pub/sub layer that is one
Redis SUBSCRIBE per instrument per process, and one deserialization per message per process,
however many browsers watch the instrument.

The engine's messages (``{"type": "market.message", "text": ...}``) do not name their group,
so the hub gives each group its own channel name and a reader task; the channel tells the
group. The reader never awaits a client: it only drops the text into each subscriber's
bounded outbox (``Subscriber.offer``), so one slow browser cannot delay the others.

One hub per event loop (the ASGI server runs one loop per process; the channel layer and
the Redis clients are bound to a loop too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ingestion.tickstore import TickStore, get_tick_store

logger = logging.getLogger(__name__)

BAR_GROUP_PREFIX = "bar1m."
# The channel layers forget memberships older than their ``group_expiry`` (a day by
# default); a hub lives as long as its process, so it renews them well before that.
GROUP_REFRESH_S = 3600.0
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
    """One joined group: its local subscribers, its channel name and its reader task."""

    __slots__ = ("channel", "group", "joining", "members", "opened", "reader")

    def __init__(self, group: str) -> None:
        self.group = group
        self.members: set[Subscriber] = set()
        self.joining = 0  # joins waiting for the layer subscription; they keep the route alive
        self.channel: str | None = None
        self.reader: asyncio.Task | None = None
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


class FanoutHub:
    """Joins channel-layer groups once per process and fans their messages out to local subscribers."""

    def __init__(self, layer, *, resolver: SymbolResolver | None = None) -> None:
        self.layer = layer
        self.routes: dict[str, _Route] = {}
        self.resolver = resolver or SymbolResolver(ttl_s=float(getattr(settings, "WS_SYMBOL_CACHE_TTL_S", 30.0)))
        self.connections: set[Watched] = set()
        self.messages = 0  # received from the layer, for status pages and benchmarks
        self._store: TickStore | None = None
        self._background: set[asyncio.Task] = set()
        self._watchdog: asyncio.Task | None = None
        self._refresher: asyncio.Task | None = None

    @property
    def store(self) -> TickStore:
        """The tick store client shared by this loop's connections (snapshots)."""
        if self._store is None:
            self._store = get_tick_store()
        return self._store

    # --- subscriptions ----------------------------------------------------------------------
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
                route.channel = await self.layer.new_channel()
                route.reader = asyncio.create_task(self._read(route), name=f"hub-{group}")
                await self.layer.group_add(group, route.channel)
            except BaseException as exc:
                route.joining -= 1
                if self.routes.get(group) is route:
                    del self.routes[group]
                route.opened.set_exception(exc)
                route.opened.exception()
                self.spawn(self._shut(route))
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
            self.spawn(self._shut(route))

    async def _read(self, route: _Route) -> None:
        # The hot path: no parsing, no awaiting clients; one receive per message.
        receive = self.layer.receive
        channel = route.channel
        group = route.group
        members = route.members
        bars = group.startswith(BAR_GROUP_PREFIX)
        while True:
            message = await receive(channel)
            text = message.get("text")
            if text is None:
                continue
            self.messages += 1
            key = conflation_key(group, text) if bars else group
            for member in members:
                member.offer(key, text)

    async def _shut(self, route: _Route) -> None:
        with contextlib.suppress(BaseException):
            await route.opened
        if route.reader is not None:
            route.reader.cancel()
            with contextlib.suppress(BaseException):
                await route.reader
        if route.channel is not None:
            try:
                await self.layer.group_discard(route.group, route.channel)
            except Exception:
                logger.warning("leaving channel-layer group %s failed", route.group, exc_info=True)

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
        if self._refresher is None or self._refresher.done():
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
                if route.channel is not None and route.opened.done() and not route.opened.exception():
                    try:
                        await self.layer.group_add(route.group, route.channel)
                    except Exception:
                        logger.warning("renewing channel-layer group %s failed", route.group, exc_info=True)

    async def aclose(self) -> None:
        """Leave every group and stop the hub's tasks (tests, shutdown)."""
        routes, self.routes = list(self.routes.values()), {}
        for route in routes:
            await self._shut(route)
        for task in (self._watchdog, self._refresher, *self._background):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._watchdog = self._refresher = None
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
