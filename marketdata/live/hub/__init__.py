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
subscribes to the layer's own group channel names on a connection of its own (``bus``).
Other layers (the in-memory one of the embedded mode) are read through ``layer.receive``.

One hub per event loop (the ASGI server runs one loop per process; the channel layer and
the Redis clients are bound to a loop too).

The package, one concern a module (each imports only the ones listed before it):

- ``resolver``: channel symbols to instruments (``SymbolResolver``, ``resolve_symbols``).
- ``bus``: the Redis pub/sub source reading the layer's group channels (``RedisPubSubSource``).
- ``fanout``: the hub itself, its subscription index and the per-loop registry
  (``FanoutHub``, ``conflation_key``, ``get_hub``, ``close_hub``).
"""

from marketdata.live.hub.bus import RedisPubSubSource
from marketdata.live.hub.fanout import (
    BAR_GROUP_PREFIX,
    FanoutHub,
    HubStats,
    Subscriber,
    Watched,
    close_hub,
    conflation_key,
    get_hub,
    live_hubs,
)
from marketdata.live.hub.resolver import LiveInstrument, ResolveError, SymbolResolver, resolve_symbols

__all__ = [
    "BAR_GROUP_PREFIX",
    "FanoutHub",
    "HubStats",
    "LiveInstrument",
    "RedisPubSubSource",
    "ResolveError",
    "Subscriber",
    "SymbolResolver",
    "Watched",
    "close_hub",
    "conflation_key",
    "get_hub",
    "live_hubs",
    "resolve_symbols",
]
