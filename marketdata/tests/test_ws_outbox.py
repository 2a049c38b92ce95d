"""The outbox of one connection: conflation, bounds, reply order, snapshots, bar keys, stuck sends."""

from __future__ import annotations

import asyncio

from marketdata.live.hub import conflation_key
from marketdata.live.outbox import Outbox
from marketdata.live.protocol import bar_payload, encode
from marketdata.live.types import Bar


class Recorder:
    """An ASGI ``send`` that records frames; ``gate`` closed makes it hang like a stuck socket."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, message: dict) -> None:
        await self.gate.wait()
        self.texts.append(message["text"])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_updates_of_a_channel_replace_each_other_while_the_client_is_blocked():
    send = Recorder()
    send.gate.clear()
    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.start()
    outbox.offer("quote.1", "first")  # taken by the sender, which now hangs in send()
    await settle()
    for i in range(1000):
        outbox.offer("quote.1", f"a{i}")
        outbox.offer("quote.2", f"b{i}")
    assert dict(outbox.pending) == {"quote.1": "a999", "quote.2": "b999"}
    assert outbox.conflated == 2 * 999
    assert outbox.busy_since is not None
    send.gate.set()
    await settle()
    assert send.texts == ["first", "a999", "b999"]
    assert outbox.busy_since is None
    await outbox.stop()


async def test_pending_channels_are_bounded_and_replies_go_first():
    send = Recorder()
    send.gate.clear()
    outbox = Outbox(send, max_pending=3, max_replies=2)
    outbox.start()
    outbox.offer("quote.0", "blocked")
    await settle()
    for i in range(1, 6):
        outbox.offer(f"quote.{i}", f"u{i}")
    assert list(outbox.pending) == ["quote.1", "quote.2", "quote.3"]
    assert outbox.dropped == 2 and outbox.full_since is not None
    assert outbox.reply("r1") and outbox.reply("r2")
    assert not outbox.reply("r3")  # the client stopped reading its replies
    send.gate.set()
    await settle()
    assert send.texts == ["blocked", "r1", "r2", "u1", "u2", "u3"]
    assert outbox.full_since is None
    await outbox.stop()


async def test_a_snapshot_older_than_a_live_update_is_not_sent():
    send = Recorder()
    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.start()
    outbox.expect_snapshot("quote.1")
    outbox.expect_snapshot("quote.2")
    outbox.offer("quote.1", "live-1")  # arrived while the snapshot was being read
    outbox.snapshot("quote.1", "snapshot-1")
    outbox.snapshot("quote.2", "snapshot-2")
    outbox.snapshot("quote.3", "never-expected")
    await settle()
    assert send.texts == ["live-1", "snapshot-2"]
    await outbox.stop()


async def test_a_closed_bar_is_not_replaced_by_the_next_minutes_bar():
    t0 = 1_705_312_800_000
    closed = encode(bar_payload(Bar(7, t0, 1.0, 2.0, 0.5, 1.5, 10), "AAPL", "NASDAQ", closed=True))
    opened = encode(bar_payload(Bar(7, t0 + 60_000, 1.5, 1.5, 1.5, 1.5, 1), "AAPL", "NASDAQ", closed=False))
    updated = encode(bar_payload(Bar(7, t0 + 60_000, 1.5, 1.6, 1.5, 1.6, 2), "AAPL", "NASDAQ", closed=False))
    send = Recorder()
    send.gate.clear()
    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.start()
    outbox.offer("quote.0", "blocked")
    await settle()
    for text in (closed, opened, updated):
        outbox.offer(conflation_key("bar1m.7", text), text)
    assert list(outbox.pending.values()) == [closed, updated]
    assert conflation_key("quote.7", closed) == "quote.7"
    outbox.discard("bar1m.7")  # unsubscribing drops every pending bar of the channel
    assert not outbox.pending
    await outbox.stop()


async def test_a_live_update_already_in_the_snapshot_is_not_sent_after_it():
    send = Recorder()
    outbox = Outbox(send, max_pending=10, max_replies=10)
    outbox.start()
    outbox.expect_snapshot("quote.1")
    outbox.snapshot("quote.1", '{"message_type":"snapshot","seq":5}', seq=5)  # read after the engine's write
    outbox.offer("quote.1", '{"message_type":"data","seq":5}')  # ...whose live update arrives now
    await settle()
    outbox.offer("quote.1", '{"message_type":"data","seq":5}')
    outbox.offer("quote.1", '{"message_type":"data","seq":6}')
    await settle()
    assert send.texts == ['{"message_type":"snapshot","seq":5}', '{"message_type":"data","seq":6}']
    await outbox.stop()
