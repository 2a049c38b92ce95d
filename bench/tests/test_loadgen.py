"""The benchmarks' load generator (``bench.loadgen`` with its C loop, ``bench/measure.c``) against a real server.

A small ``websockets`` server in this event loop answers the generator's subscriptions the
way ours does (``Subscribed to`` replies), then sends what the benchmarks measure: data
messages one per frame, ``batch`` frames (one larger than 64 KiB, so it arrives in several
reads), a message for a symbol nobody subscribed to, and a ping the C loop must answer. The
generator runs as the benchmarks run it (``LoadGenerators``: a real process, commands on its
stdin), and what it reports is checked message by message.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from websockets.asyncio.server import serve

from bench import procs
from bench.loadgen import LoadGenerators

CLIENTS = [["AAA", "BBB"], ["BBB", "CCC"], ["AAA", "CCC"]]


def data(symbol: str, seq: int, close: float, sent_ns: int | None = None) -> dict:
    """A data message laid out as ours (``message_type`` and ``symbol`` first, ``sent_ns`` last)."""
    message = {"message_type": "data", "symbol": symbol, "exchange": "X", "close": close, "volume": None, "seq": seq}
    if sent_ns is not None:
        message["sent_ns"] = sent_ns
    return message


class FeedServer:
    """Replies to subscriptions, then on ``go`` sends each client its script and a ping."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.go = asyncio.Event()
        self.connections: list = []
        self.pongs = 0

    def script(self, symbols: list[str]) -> list[str]:
        stamp = (lambda: time.time_ns()) if self.mode == "fanout" else (lambda: None)
        frames = [orjson.dumps(data(s, seq, 100 + seq / 100, stamp())).decode() for seq in (1, 2) for s in symbols]
        batch = [data(symbols[0], 3, 103.0, stamp()), data(symbols[1], 3, 203.0, stamp())]
        frames.append(orjson.dumps({"message_type": "batch", "messages": batch}).decode())
        # 400 messages of the second symbol in one frame of over 64 KiB (several socket reads)
        big = [data(symbols[1], seq, 1000.0 + seq, stamp()) for seq in range(4, 404)]
        frames.append(orjson.dumps({"message_type": "batch", "messages": big}).decode())
        frames.append(orjson.dumps(data("ZZZ", 1, 1.0, stamp())).decode())  # subscribed by no one
        frames.append('{"message_type":"info","message":"not data"}')
        return frames

    async def handler(self, ws) -> None:
        subscribe = orjson.loads(await ws.recv())
        symbols = subscribe["channels"]
        for s in symbols:
            await ws.send(orjson.dumps({"message_type": "info", "message": f"Subscribed to {s}"}).decode())
        self.connections.append(ws)
        await self.go.wait()
        for frame in self.script(symbols):
            await ws.send(frame)
        pong = await ws.ping(b"are you there")
        async with asyncio.timeout(10):
            await pong
        self.pongs += 1
        await ws.wait_closed()


async def run(mode: str) -> tuple[FeedServer, dict]:
    feed = FeedServer(mode)
    port = procs.free_port()
    async with serve(feed.handler, "127.0.0.1", port, compression=None, max_size=None):
        lg = LoadGenerators(name=f"test-loadgen-{mode}", host="127.0.0.1", port=port, path="/ws", mode=mode, core=None)
        try:
            await lg.start(CLIENTS, processes=1, within=60)
            await lg.mark()
            feed.go.set()
            expected = sum(2 * 2 + 2 + 400 + 1 for _ in CLIENTS)
            async with asyncio.timeout(30):
                while await lg.received() < expected or feed.pongs < len(CLIENTS):  # noqa: ASYNC110 - another process counts
                    await asyncio.sleep(0.05)
            return feed, await lg.stop()
        finally:
            await lg.kill()


@pytest.mark.slow
async def test_the_c_loop_counts_every_data_message_with_its_last_seq_and_latency():
    started = time.time_ns()
    feed, result = await run("fanout")
    assert feed.pongs == len(CLIENTS)  # every ping answered by the C loop
    assert result["opened"] == len(CLIENTS) and result["failed"] == 0 and result["errors"] == []
    per_client = 2 * 2 + 2 + 400  # subscribed symbols' messages
    assert result["received"] == len(CLIENTS) * (per_client + 1)
    assert result["unknown_symbol"] == len(CLIENTS)
    for symbols, seqs in zip(CLIENTS, result["seqs"], strict=True):
        first, second = symbols
        assert seqs == {first: [3, 3], second: [403, 403]}
    latencies = result["latencies_ns"]
    assert len(latencies) == result["received"] - result["unknown_symbol"]  # one per subscribed message
    assert (latencies >= 0).all() and (latencies < time.time_ns() - started).all()


@pytest.mark.slow
async def test_the_e2e_mode_keeps_each_message_close_with_its_client_and_symbol():
    _feed, result = await run("e2e")
    rows = result["e2e"]
    assert len(rows) == len(CLIENTS) * (2 * 2 + 2 + 400)  # the unknown symbol is counted, not kept
    for client, symbols in enumerate(CLIENTS):
        mine = [(symbol, close) for _, c, symbol, close in rows if c == client]
        first, second = symbols
        assert [close for symbol, close in mine if symbol == first] == [100.01, 100.02, 103.0]
        assert [close for symbol, close in mine if symbol == second] == [100.01, 100.02, 203.0] + [
            1000.0 + seq for seq in range(4, 404)
        ]
    assert len(result["latencies_ns"]) == 0
