"""Publishing live updates: one serialized message per update, sent to that instrument's group.

Group names are built from instrument ids (channel-layer group names must match
``^[a-zA-Z0-9._-]+$``; symbols such as ``M&M`` or ``^NSEI`` would not).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import orjson

from ingestion.bars import Bar, Quote

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "market.message"  # the consumer's handler: market_message


def quote_group(instrument_id: int) -> str:
    return f"quote.{instrument_id}"


def bar_group(instrument_id: int) -> str:
    return f"bar1m.{instrument_id}"


def iso_ms(ts_ms: int) -> str:
    """UTC ISO 8601 with a Z, millisecond precision."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class ChannelLayerPublisher:
    """Sends pre-serialized messages to channel-layer groups (one send per group, not per client)."""

    def __init__(self, layer=None) -> None:
        if layer is None:
            from channels.layers import get_channel_layer

            layer = get_channel_layer()
        self.layer = layer

    async def publish(self, messages: list[tuple[str, str]]) -> None:
        """Send ``(group, text)`` pairs concurrently; a failed send is logged, never raised."""
        if not messages:
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
