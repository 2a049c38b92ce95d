"""The fan-out baseline: a minimal WebSocket server on the ``websockets`` library.

``python -m bench.ws_baseline --port P --redis-url URL --prefix PREFIX --symbols MAP.json``

It does the bare minimum the real server does for the fan-out benchmark, with the bare
tools: accept ``/ws?token=...`` (the token is only checked to be present: no database),
answer ``{"message_type": "subscribe", "channels": [...]}`` with one ``Subscribed to``
info per symbol, subscribe once per process to the same Redis pub/sub channels the
channel layer uses (``{prefix}__group__quote.{id}``), decode the layer's msgpack envelope
and ``websockets.broadcast`` the ``text`` to the local subscribers. No conflation, no
back-pressure handling, no stuck-client watchdog, no snapshots.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgpack
import orjson
import redis.asyncio as aioredis
import websockets
from websockets.asyncio.server import broadcast, serve


class Baseline:
    def __init__(self, redis_url: str, prefix: str, symbols: dict[str, int]) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        self.pubsub = self.redis.pubsub()
        self.prefix = prefix
        self.symbols = symbols
        self.members: dict[bytes, set] = {}  # redis channel -> connections
        self.messages = 0
        # redis-py's PubSub opens its connection on the first command: concurrent first
        # subscribes would each open one, and only one connection is read.
        self.lock = asyncio.Lock()

    def channel(self, instrument_id: int) -> bytes:
        return f"{self.prefix}__group__quote.{instrument_id}".encode()

    async def handler(self, ws) -> None:
        if not parse_qs(urlsplit(ws.request.path).query).get("token"):
            await ws.close(4401, "auth required")
            return
        joined: list[bytes] = []
        try:
            async for frame in ws:
                try:
                    data = orjson.loads(frame)
                except orjson.JSONDecodeError:
                    continue
                if data.get("message_type") != "subscribe":
                    continue
                for name in data.get("channels") or [data.get("channel")]:
                    iid = self.symbols.get(name)
                    if iid is None:
                        await ws.send(orjson.dumps({"message_type": "error", "code": "unknown_symbol"}).decode())
                        continue
                    ch = self.channel(iid)
                    members = self.members.get(ch)
                    if members is None:
                        members = self.members[ch] = set()
                        async with self.lock:
                            await self.pubsub.subscribe(ch)
                    members.add(ws)
                    joined.append(ch)
                    await ws.send(orjson.dumps({"message_type": "info", "message": f"Subscribed to {name}"}).decode())
        except websockets.ConnectionClosed:
            pass
        finally:
            for ch in joined:
                self.members.get(ch, set()).discard(ws)

    async def pump(self) -> None:
        while not self.pubsub.subscribed:  # noqa: ASYNC110 - redis-py offers no event for it
            await asyncio.sleep(0.05)
        unpack = msgpack.unpackb
        async for item in self.pubsub.listen():
            if item["type"] != "message":
                continue
            members = self.members.get(item["channel"])
            if not members:
                continue
            self.messages += 1
            broadcast(members, unpack(item["data"])["text"])


def _symbols(path: str) -> dict[str, int]:
    return json.loads(Path(path).read_text())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--symbols", required=True, help="JSON file {symbol: instrument id}")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    baseline = Baseline(args.redis_url, args.prefix, _symbols(args.symbols))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(baseline.handler, "127.0.0.1", args.port, compression=None, max_queue=64, backlog=4096):
        pump = asyncio.create_task(baseline.pump())
        await stop.wait()
        pump.cancel()
        with contextlib.suppress(BaseException):
            await pump


if __name__ == "__main__":
    asyncio.run(main())
