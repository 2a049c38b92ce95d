"""Reading channels_redis' pub/sub group channels directly, for the hub, with redis-py.

With channels_redis' pub/sub layer the hub does not go through the layer to receive: it
SUBSCRIBEs to the layer's own group channel names (``{prefix}__group__{group}``) on a
connection of its own (``RedisPubSubSource``) and hands each pushed message to the hub's
dispatch straight from the reader task. Through the layer, every message costs a
``get_message`` round of awaits in the layer's receive task, a queue hop and a wake-up of
the reader: under load, when every event-loop turn is long (a thousand connections sending),
that path took a handful of messages per turn and fell seconds behind the publisher.

The connection is redis-py's asyncio ``PubSub`` (with hiredis installed, its parser): one per
Redis server (shard) of the layer, built from the layer's own host configuration. The reader
task takes replies with ``PubSub.parse_response``; as long as a socket read left complete
replies in the parser's buffer that call returns without yielding, so a burst is drained and
dispatched in one event-loop turn. redis-py reconnects a lost connection and replays the
SUBSCRIBEs (``PubSub.on_connect``); the reader retries with a backoff while Redis is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from . import bus

logger = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 10.0
RECONNECT_MAX_S = 5.0
CLIENT_NAME = "marketapp-hub"  # CLIENT LIST shows the hub's subscriber connections by this name


class _Shard:
    """The subscriber connection to one Redis server of the layer.

    SUBSCRIBE and UNSUBSCRIBE go out in the order they were asked for (``unsubscribe`` is
    synchronous, so both go through one queue and one writer task); a SUBSCRIBE's caller
    waits for Redis' confirmation, which the reader task hands over.
    """

    def __init__(self, host: dict, source: RedisPubSubSource) -> None:
        import redis.asyncio as aioredis
        from channels_redis.utils import create_pool

        self.source = source
        options = {"client_name": CLIENT_NAME, **host}
        self.redis = aioredis.Redis(connection_pool=create_pool(options))
        self.pubsub = self.redis.pubsub()
        self.channels: set[bytes] = set()  # wanted
        self._queue: deque[tuple[str, bytes]] = deque()
        self._acks: dict[bytes, deque[asyncio.Future]] = {}
        self._writer: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._closed = False

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe and wait for Redis to confirm (raises when Redis cannot be reached)."""
        self.channels.add(channel)
        future = asyncio.get_running_loop().create_future()
        self._acks.setdefault(channel, deque()).append(future)
        self._send("SUBSCRIBE", channel)
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await future
        except BaseException:
            self.channels.discard(channel)
            waiting = self._acks.get(channel)
            if waiting and future in waiting:
                waiting.remove(future)
            raise

    def unsubscribe(self, channel: bytes) -> None:
        self.channels.discard(channel)
        self._send("UNSUBSCRIBE", channel)

    def _send(self, command: str, channel: bytes) -> None:
        self._queue.append((command, channel))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="hub-redis-write")

    async def _write(self) -> None:
        queue = self._queue
        while queue and not self._closed:
            command, channel = queue.popleft()
            batch = [channel]
            while queue and queue[0][0] == command:  # consecutive commands of one kind: one round trip
                batch.append(queue.popleft()[1])
            try:
                if command == "SUBSCRIBE":
                    await self.pubsub.subscribe(*batch)
                    if self._reader is None or self._reader.done():
                        self._reader = asyncio.create_task(self._read(), name="hub-redis-read")
                else:
                    await self.pubsub.unsubscribe(*batch)
            except Exception as exc:
                if command == "SUBSCRIBE":
                    self._fail(batch, exc)
                else:
                    logger.warning("unsubscribing the hub from %d channels failed: %r", len(batch), exc)

    def _fail(self, channels: list[bytes], exc: BaseException) -> None:
        for channel in channels:
            for future in self._acks.pop(channel, ()):
                if not future.done():
                    future.set_exception(ConnectionError(f"subscribing failed: {exc!r}"))

    def _acked(self, channel: bytes) -> None:
        waiting = self._acks.get(channel)
        if waiting:
            future = waiting.popleft()
            if not waiting:
                del self._acks[channel]
            if not future.done():
                future.set_result(None)

    async def _read(self) -> None:
        pubsub = self.pubsub
        on_message = self.source.on_message
        delay = 0.1
        while not self._closed:
            try:
                # The hot path: ``parse_response`` returns buffered replies without yielding.
                response = await pubsub.parse_response(block=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                logger.warning("the hub's Redis subscriber connection failed (%r); reconnecting", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = 0.1
            if isinstance(response, list) and len(response) == 3 and response[0] == b"message":
                on_message(response[1], response[2])
                continue
            # subscribe / unsubscribe confirmations, pongs: redis-py keeps its books with them
            message = await pubsub.handle_message(response)
            if message is not None and message["type"] == "subscribe":
                self._acked(message["channel"])

    def connected(self) -> bool:
        connection = self.pubsub.connection
        return connection is not None and connection.is_connected

    async def close(self) -> None:
        self._closed = True
        for task in (self._writer, self._reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._fail(list(self._acks), ConnectionError("closed"))
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose(close_connection_pool=True)


class RedisPubSubSource(bus.RedisPubSubSource):
    """The hub's pub/sub source on redis-py: the same channel names, shards and dispatch as
    ``bus.RedisPubSubSource``, with a redis-py subscriber per shard."""

    shard_class = _Shard

    @staticmethod
    def supported(layer) -> bool:
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
        except ImportError:
            return False
        if not isinstance(layer, RedisPubSubChannelLayer):
            return False
        return all(hasattr(RedisPubSubLoopLayer, n) for n in ("_get_group_channel_name", "_get_shard"))
