"""Publishing live updates: one serialized message per update, sent to that instrument's group.

Group names are built from instrument ids (channel-layer group names must match
``^[a-zA-Z0-9._-]+$``; symbols such as ``M&M`` or ``^NSEI`` would not).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import orjson

from marketdata.live.types import Bar, Quote

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "market.message"  # the consumer's handler: market_message
# ARGV = channel, message, channel, message, ...
PUBLISH_SCRIPT = """
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""
PUBLISH_SCRIPT_MAX_ARGS = 4000  # keeps one script call short (Redis runs scripts one at a time)


def quote_group(instrument_id: int) -> str:
    return f"quote.{instrument_id}"


def bar_group(instrument_id: int) -> str:
    return f"bar1m.{instrument_id}"


_ISO_SECONDS: dict[int, str] = {}  # epoch second -> "YYYY-MM-DDTHH:MM:SS" (a batch's ticks share seconds)
_ISO_SECONDS_MAX = 4096


def iso_ms(ts_ms: int) -> str:
    """UTC ISO 8601 with a Z, millisecond precision."""
    second, ms = divmod(int(ts_ms), 1000)
    prefix = _ISO_SECONDS.get(second)
    if prefix is None:
        if len(_ISO_SECONDS) >= _ISO_SECONDS_MAX:
            _ISO_SECONDS.clear()
        prefix = _ISO_SECONDS[second] = datetime.fromtimestamp(second, UTC).isoformat()[:19]
    return f"{prefix}.{ms:03d}Z"


def quote_payload(quote: Quote, symbol: str, exchange: str, message_type: str = "data") -> dict:
    """The WebSocket ``data``/``snapshot`` document of a quote (the seed's fields plus ours)."""
    return {
        "message_type": message_type,
        "symbol": symbol,
        "exchange": exchange,
        "timestamp": iso_ms(quote.ts),
        "open": quote.open,
        "high": quote.high,
        "low": quote.low,
        "close": quote.last,
        "volume": quote.volume,
        "previous_close": quote.previous_close,
        "adj_close": quote.last,
        "delivery_percentage": None,
        "change": quote.change,
        "change_percent": quote.change_percent,
        "bid": quote.bid,
        "ask": quote.ask,
        "seq": quote.seq,
    }


def bar_payload(bar: Bar, symbol: str, exchange: str, *, closed: bool) -> dict:
    """The WebSocket ``bar`` document of a 1-minute bar (``SYMBOL@1m`` channels)."""
    return {
        "message_type": "bar",
        "symbol": symbol,
        "exchange": exchange,
        "interval": bar.interval,
        "timestamp": iso_ms(bar.ts),
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "closed": closed,
    }


def encode(payload: dict) -> str:
    return orjson.dumps(payload).decode()


QUOTE_TEXT_ENTRIES = 8192  # per generation, see QuoteTexts


class QuoteTexts:
    """The ``/ws`` text of a stored quote (snapshot, resume replay), encoded once per process.

    A thousand dashboards reconnecting after a restart read the same quotes: each
    (quote state, symbol, kind) is encoded the first time and shared after. Two generations:
    when the current one is full it becomes the old one (O(1), no scan); a hit in the old one
    moves back. The key holds what the text is built from, so a changed quote is a new entry.
    """

    __slots__ = ("built", "current", "entries", "old")

    def __init__(self, entries: int = QUOTE_TEXT_ENTRIES) -> None:
        self.entries = entries
        self.current: dict[tuple, str] = {}
        self.old: dict[tuple, str] = {}
        self.built = 0  # texts encoded, for tests and status

    def get(self, quote: Quote, symbol: str, exchange: str, message_type: str = "data", recovered=None) -> str:
        key = (
            quote.instrument_id,
            quote.seq,
            quote.ts,
            quote.last,
            quote.open,
            quote.high,
            quote.low,
            quote.volume,
            quote.previous_close,
            quote.bid,
            quote.ask,
            symbol,
            exchange,
            message_type,
            recovered,
        )
        text = self.current.get(key)
        if text is not None:
            return text
        text = self.old.get(key)
        if text is None:
            payload = quote_payload(quote, symbol, exchange, message_type)
            if recovered is not None:
                payload["recovered"] = recovered
            text = encode(payload)
            self.built += 1
        if len(self.current) >= self.entries:
            self.old, self.current = self.current, {}
        self.current[key] = text
        return text


quote_texts = QuoteTexts()


class ChannelLayerPublisher:
    """Sends pre-serialized messages to channel-layer groups (one send per group, not per client).

    On channels_redis' pub/sub layer a batch goes out as one round trip per shard (a script
    running the PUBLISH commands): ``group_send`` takes a shard lock and awaits one round trip
    per message, which for a batch touching 500 instruments (a quote and a bar each) cost more
    than all the rest of the engine's work. The bytes published are exactly what
    ``group_send`` would publish (the layer's serializer, its group channel name), so the
    consumers and the hub cannot tell the difference. Other layers get ``group_send``.
    """

    def __init__(self, layer=None) -> None:
        if layer is None:
            from channels.layers import get_channel_layer

            layer = get_channel_layer()
        self.layer = layer
        self._pipelined = _supports_pipelined_publish(layer)
        self._scripts: dict[int, object] = {}  # one registered script per shard client

    async def publish(self, messages: list[tuple[str, str]]) -> None:
        """Send ``(group, text)`` pairs; a failed send is logged, never raised."""
        if not messages:
            return
        if self._pipelined:
            try:
                await self._publish_pipelined(messages)
            except Exception as exc:
                logger.warning("publish of %d messages failed: %r", len(messages), exc)
            return
        results = await asyncio.gather(
            *(
                self.layer.group_send(group, {"type": MESSAGE_TYPE, "group": group, "text": text})
                for group, text in messages
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("publish failed: %r", result)

    async def _publish_pipelined(self, messages: list[tuple[str, str]]) -> None:
        layer = self.layer
        loop_layer = layer._get_layer()  # the per-event-loop layer owning the shard connections
        serialize = layer.serialize
        by_shard: dict[int, tuple[object, list]] = {}
        for group, text in messages:
            channel = loop_layer._get_group_channel_name(group)
            shard = loop_layer._get_shard(channel)
            entry = by_shard.get(id(shard))
            if entry is None:
                shard._ensure_redis()
                entry = by_shard[id(shard)] = (shard, [])
            entry[1].extend((channel, serialize({"type": MESSAGE_TYPE, "group": group, "text": text})))
        await asyncio.gather(*(self._publish_on(shard._redis, args) for shard, args in by_shard.values()))

    async def _publish_on(self, client, args: list) -> None:
        # One script call publishing every message: redis-py parses each pipelined reply in
        # Python, and those replies (subscriber counts nobody reads) were most of the cost.
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(PUBLISH_SCRIPT)
        for start in range(0, len(args), PUBLISH_SCRIPT_MAX_ARGS):
            await script(args=args[start : start + PUBLISH_SCRIPT_MAX_ARGS])


def _supports_pipelined_publish(layer) -> bool:
    """Whether ``layer`` is channels_redis' pub/sub layer with the internals the fast path uses."""
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
    except ImportError:
        return False
    return (
        isinstance(layer, RedisPubSubChannelLayer)
        and all(hasattr(RedisPubSubChannelLayer, name) for name in ("_get_layer", "serialize"))
        and all(hasattr(RedisPubSubLoopLayer, name) for name in ("_get_group_channel_name", "_get_shard"))
        and hasattr(RedisSingleShardConnection, "_ensure_redis")
    )
