"""``marketapp.uvicorn_ws.WebSocketProtocol``: uvicorn's websockets protocol with direct text frames.

A real uvicorn server (in this event loop, real sockets) runs a small ASGI app with the
protocol, and a standard client (the ``websockets`` library) checks what arrives: every
frame length encoding, compressed connections (uvicorn's own path), order, close codes,
back-pressure from a client that stops reading, and what a connection keeps.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from marketapp.uvicorn_ws import WebSocketProtocol, text_frame
from marketdata.live.outbox import WRITE_TEXT_EXTENSION
from marketdata.tests.servers import free_port

SIZES = [0, 1, 125, 126, 65_535, 65_536, 300_000]


def payload(n: int) -> str:
    """``n`` characters, some of them outside ASCII (UTF-8 of several bytes)."""
    return ("é€x" * (n // 3 + 1))[:n]


class App:
    """``size N``: one text of N characters; ``flood N``: N texts of 64 KiB; ``close C``: close with C.

    ``direct N``: N texts of 64 KiB through the server's writer (``WRITE_TEXT_EXTENSION``), each
    one it refuses through ``send``; ``direct-size N``: one text of N characters the same way.
    """

    def __init__(self) -> None:
        self.sent = 0
        self.refused = 0
        self.received: list[str] = []

    async def write(self, scope, send, text: str) -> None:
        if not scope["extensions"][WRITE_TEXT_EXTENSION](text):
            self.refused += 1
            await send({"type": "websocket.send", "text": text})

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            command, _, arg = event["text"].partition(" ")
            self.received.append(event["text"])
            if command == "size":
                await send({"type": "websocket.send", "text": payload(int(arg))})
            elif command == "flood":
                for i in range(int(arg)):
                    await send({"type": "websocket.send", "text": f"{i:08d}" + "x" * 65_528})
                    self.sent += 1
            elif command == "direct":
                for i in range(int(arg)):
                    await self.write(scope, send, f"{i:08d}" + "x" * 65_528)
                    self.sent += 1
            elif command == "direct-size":
                await self.write(scope, send, payload(int(arg)))
            elif command == "close":
                await send({"type": "websocket.send", "text": "bye"})
                await send({"type": "websocket.close", "code": int(arg)})
                return


@pytest.fixture
async def server():
    app = App()
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=WebSocketProtocol, lifespan="off", log_level="warning", ws_max_size=65536
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    async with asyncio.timeout(10):
        while not srv.started:  # noqa: ASYNC110 - uvicorn exposes no event for this
            await asyncio.sleep(0.01)
    yield app, srv, f"ws://127.0.0.1:{port}/ws"
    srv.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


def protocols(srv) -> list[WebSocketProtocol]:
    return [c for c in srv.server_state.connections if isinstance(c, WebSocketProtocol)]


def test_text_frames_use_the_shortest_length_encoding():
    assert text_frame(b"") == b"\x81\x00"
    assert text_frame(b"a" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"a" * 65_535)[:4] == b"\x81\x7e\xff\xff"
    assert text_frame(b"a" * 65_536)[:10] == b"\x81\x7f" + (65_536).to_bytes(8, "big")


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "permessage-deflate"])
async def test_every_length_arrives_intact_on_plain_and_compressed_connections(server, compression):
    _app, srv, url = server
    async with connect(url, compression=compression, max_size=None) as ws:
        negotiated = [type(e).__name__ for e in ws.protocol.extensions]
        assert bool(negotiated) is (compression is not None)
        for n in SIZES:
            await ws.send(f"size {n}")
            assert await ws.recv() == payload(n)
        (conn,) = protocols(srv)
        assert bool(conn.conn.extensions) is (compression is not None)  # compressed: uvicorn's own path


async def test_messages_arrive_in_order_and_a_close_follows_the_frames_before_it(server):
    app, _srv, url = server
    async with connect(url, compression=None) as ws:
        for n in range(50):
            await ws.send(f"size {n}")
        assert [len(await ws.recv()) for _ in range(50)] == list(range(50))
        await ws.send("close 4321")
        assert await ws.recv() == "bye"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4321
    assert app.received[:3] == ["size 0", "size 1", "size 2"]


async def test_a_client_that_stops_reading_holds_the_sender_back_and_then_gets_everything(server):
    app, srv, url = server
    async with connect(url, compression=None, max_size=None, max_queue=1) as ws:
        await ws.send("flood 2000")  # 2000 x 64 KiB = 125 MiB if nothing held the sender back
        await asyncio.sleep(1.0)
        held = app.sent
        assert held < 2000, "the server buffered everything for a client that does not read"
        (conn,) = protocols(srv)
        assert not conn.writable.is_set()  # waiting for the transport to drain
        got = [await ws.recv() for _ in range(2000)]
    assert [int(m[:8]) for m in got] == list(range(2000))
    assert app.sent == 2000


async def test_a_connection_keeps_no_handshake_objects_queue_or_event(server):
    _app, srv, url = server
    async with connect(url, compression=None) as ws:
        await ws.send("size 3")
        assert await ws.recv() == payload(3)
        (conn,) = protocols(srv)
        assert conn.request is None and conn.response is None
        assert not isinstance(conn.queue, asyncio.Queue) and not isinstance(conn.writable, asyncio.Event)
        assert conn.queue.empty() and conn.queue._items is None  # idle: no deque kept


async def test_the_direct_writer_writes_until_the_transport_pushes_back_then_send_takes_over(server):
    app, srv, url = server
    async with connect(url, compression=None, max_size=None, max_queue=1) as ws:
        await ws.send("direct 2000")
        await asyncio.sleep(1.0)
        assert app.sent < 2000, "the writer buffered everything for a client that does not read"
        assert app.refused >= 1  # the paused transport refused a frame; the app waits in send()
        (conn,) = protocols(srv)
        assert not conn.writable.is_set()
        got = [await ws.recv() for _ in range(2000)]
    assert [int(m[:8]) for m in got] == list(range(2000))


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "permessage-deflate"])
async def test_the_direct_writer_frames_every_length_and_leaves_compressed_connections_to_send(server, compression):
    app, _srv, url = server
    async with connect(url, compression=compression, max_size=None) as ws:
        for n in SIZES:
            await ws.send(f"direct-size {n}")
            assert await ws.recv() == payload(n)
    assert app.refused == (len(SIZES) if compression else 0)
