"""Reading channels_redis' pub/sub group channels directly, for the hub.

With channels_redis' pub/sub layer the hub does not go through the layer to receive: it
SUBSCRIBEs to the layer's own group channel names (``{prefix}__group__{group}``) on a
connection of its own and parses the pushed messages straight off the socket
(``RedisPubSubSource``), dispatching each read's worth of messages in one callback. Through
the layer, every message costs a ``get_message`` round of awaits in the layer's receive task,
a queue hop and a wake-up of the reader: under load, when every event-loop turn is long
(a thousand connections sending), that path took a handful of messages per turn and fell
seconds behind the publisher.

The connection speaks RESP2 itself (``encode_command``, ``parse_reply``, ``_PubSubProtocol``):
one subscriber connection per Redis server (shard) of the layer, reconnecting and
resubscribing when it is lost.

Why not redis-py: ``redis_bus`` is the same source on redis-py's asyncio ``PubSub`` (hiredis
parser), selectable with ``LIVE_PUBSUB_CLIENT=redis-py`` for ``bench.pubsub``. At the fan-out
load (``bench.fanout``'s 1,000 clients x 10 of 100 symbols, 2,000 updates/s; two full runs on a
shared, noisy 2-core machine) it was a wash: redis-py / RESP delivered msgs/s 1.11 and 0.88,
p99 0.75 and 0.67, server CPU per delivered message 1.05 and 1.09. Hub-level it reads at
9.2 us per incoming message against 4.7 us here. But under a flood across many instruments
(``test_ws_server``'s slow-client test, uvicorn) the fast client's median latency went from
3.8 ms to 161 ms and it got 57 % of the updates instead of 96 %: far more than the 10 % the
issue allows, so the hand-written client stays the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

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

    # One subscriber per layer shard; ``redis_bus`` swaps in its redis-py subscriber here.
    shard_class: type = _ShardSubscriber

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
            subscriber = self.shards[id(shard)] = self.shard_class(shard.host, self)
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
