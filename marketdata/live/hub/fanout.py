"""The hub: joins channel-layer groups once per process and fans their messages out locally.

See the package docstring (``marketdata.live.hub``) for why it is built this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Protocol

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from marketdata.live.hub.bus import RedisPubSubSource
from marketdata.live.hub.resolver import SymbolResolver
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


@dataclass
class HubStats:
    """Counters of the hub's connections: the stuck ones it closed, and what closed ones had sent.

    A live connection's counters stay on its outbox (no shared counter on the hot path);
    ``unregister`` adds them here when it goes, so the process totals never go backwards.
    """

    stuck_disconnects: int = 0
    frames_sent: int = 0
    conflated: int = 0
    dropped: int = 0


class _Route:
    """One joined group: its local subscribers and whether the layer subscription is in place."""

    __slots__ = ("_fanout", "bars", "group", "joining", "members", "opened")

    def __init__(self, group: str) -> None:
        self.group = group
        self.bars = group.startswith(BAR_GROUP_PREFIX)
        self.members: set[Subscriber] = set()
        # The members as a tuple for dispatch (faster to walk than the set), made again after a change
        self._fanout: tuple[Subscriber, ...] | None = None
        self.joining = 0  # joins waiting for the layer subscription; they keep the route alive
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()

    def add(self, member: Subscriber) -> None:
        self.members.add(member)
        self._fanout = None

    def discard(self, member: Subscriber) -> None:
        self.members.discard(member)
        self._fanout = None

    def fanout(self) -> tuple[Subscriber, ...]:
        if self._fanout is None:
            self._fanout = tuple(self.members)
        return self._fanout


def pubsub_source() -> type[RedisPubSubSource]:
    """The Redis pub/sub client the hub reads with: ``LIVE_PUBSUB_CLIENT`` ``resp`` (ours) or ``redis-py``."""
    if getattr(settings, "LIVE_PUBSUB_CLIENT", "resp") == "redis-py":
        from marketdata.live.hub.redis_bus import RedisPubSubSource as RedisPySource

        return RedisPySource
    return RedisPubSubSource


class FanoutHub:
    """Joins channel-layer groups once per process and fans their messages out to local subscribers."""

    def __init__(self, layer, *, resolver: SymbolResolver | None = None) -> None:
        self.layer = layer
        self.routes: dict[str, _Route] = {}
        self.resolver = resolver or SymbolResolver(ttl_s=float(getattr(settings, "WS_SYMBOL_CACHE_TTL_S", 30.0)))
        self.connections: set[Watched] = set()
        self.messages = 0  # received from the layer, for status pages and benchmarks
        self.stats = HubStats()
        # unregister and figures() (read from the metrics threads) see connections and totals alike
        self._stats_lock = threading.Lock()
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
        source = pubsub_source()
        if source.supported(layer):
            self.direct = source(layer, self._dispatch, self.spawn)

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

    async def quotes_since(self, since: dict[int, int]) -> dict:
        """The tick store's quote histories after each seq (``/ws`` resume), gated like snapshots."""
        async with self._snapshot_gate:
            return await self.store.quotes_since(since)

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
        route.add(member)
        self._ensure_background()

    def leave(self, group: str, member: Subscriber) -> None:
        """Stop delivering ``group`` to ``member``; the last member out leaves the layer group."""
        route = self.routes.get(group)
        if route is None:
            return
        route.discard(member)
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
        for member in route._fanout or route.fanout():
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
        with self._stats_lock:
            if connection in self.connections:
                self.connections.discard(connection)
                outbox = getattr(connection, "outbox", None)
                if outbox is not None:
                    self.stats.frames_sent += outbox.sent
                    self.stats.conflated += outbox.conflated
                    self.stats.dropped += outbox.dropped

    def figures(self) -> dict[str, int]:
        """Connections, subscriptions and the send counters of this hub (safe from another thread)."""
        with self._stats_lock:
            connections = list(self.connections)
            totals = HubStats(**vars(self.stats))
        outboxes = [o for o in (getattr(c, "outbox", None) for c in connections) if o is not None]
        routes = list(self.routes.values())
        return {
            "connections": len(connections),
            "subscriptions": sum(len(route.members) for route in routes),
            "groups": len(routes),
            "messages": self.messages,
            "frames_sent": totals.frames_sent + sum(o.sent for o in outboxes),
            "conflated": totals.conflated + sum(o.conflated for o in outboxes),
            "dropped": totals.dropped + sum(o.dropped for o in outboxes),
            "stuck_disconnects": totals.stuck_disconnects,
        }

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


def live_hubs() -> list[FanoutHub]:
    """Every hub of this process (one per event loop), for the metrics."""
    for _ in range(5):
        try:
            return list(_hubs.values())
        except RuntimeError:  # a loop's hub came or went while another thread copied the registry
            continue
    return []


async def close_hub() -> None:
    """Close this loop's hub, if it has one (the next ``get_hub`` makes a fresh one)."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.aclose()
