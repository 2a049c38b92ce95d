"""The outbox of one connection: conflation, bounds, reply order, snapshots, bar keys, stuck sends."""

from __future__ import annotations

import asyncio
import json

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


class Writer:
    """A server's ``WRITE_TEXT_EXTENSION`` writer: writes into the recorder's frames while ``accepting``."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.accepting = True
        self.calls = 0

    def __call__(self, text: str) -> bool:
        self.calls += 1
        if not self.accepting:
            return False
        self.recorder.texts.append(text)
        return True


async def direct_outbox() -> tuple[Recorder, Writer, Outbox]:
    """An outbox with a server writer, started, its sender parked."""
    send = Recorder()
    writer = Writer(send)
    outbox = Outbox(send, max_pending=10, max_replies=10, write_now=writer)
    outbox.start()
    await settle()
    return send, writer, outbox


async def test_an_idle_connection_gets_its_update_written_at_once_without_waking_the_sender():
    send = Recorder()
    writer = Writer(send)
    outbox = Outbox(send, max_pending=10, max_replies=10, write_now=writer)
    outbox.start()
    await settle()  # the sender is parked
    outbox.offer("quote.1", "a1")
    assert send.texts == ["a1"]  # written inside offer, before any task ran
    assert outbox.sent == 1 and not outbox.pending
    outbox.offer("quote.2", "b1")
    assert send.texts == ["a1", "b1"]
    await outbox.stop()


async def test_a_transport_pushing_back_queues_the_update_and_later_ones_never_overtake_it():
    send, writer, outbox = await direct_outbox()
    writer.accepting = False
    send.gate.clear()  # and the sender's own send waits, as uvicorn's does for a paused transport
    outbox.offer("quote.1", "a1")
    assert send.texts == [] and dict(outbox.pending) == {"quote.1": "a1"}
    await settle()  # the sender took a1 and waits in send()
    writer.accepting = True
    calls = writer.calls
    outbox.offer("quote.2", "b1")  # something is on its way: this one queues behind it
    outbox.offer("quote.2", "b2")
    assert writer.calls == calls
    send.gate.set()
    await settle()
    assert send.texts == ["a1", "b2"]
    outbox.offer("quote.3", "c1")  # idle again: written at once
    assert send.texts == ["a1", "b2", "c1"]
    await outbox.stop()


async def test_a_reply_waiting_goes_before_an_update_offered_after_it():
    send, _writer, outbox = await direct_outbox()
    outbox.reply("info")
    outbox.offer("quote.1", "a1")
    await settle()
    assert send.texts == ["info", "a1"]
    await outbox.stop()


async def test_batched_and_binary_connections_never_write_single_updates_directly():
    send = Recorder()
    writer = Writer(send)
    outbox = Outbox(send, max_pending=10, max_replies=10, write_now=writer)
    outbox.set_batch(20)
    outbox.start()
    await settle()
    outbox.offer("quote.1", "1")
    outbox.offer("quote.2", "2")
    assert writer.calls == 0
    await asyncio.sleep(0.1)
    assert all(t.startswith('{"message_type":"batch","messages":[') for t in send.texts)
    assert [m for t in send.texts for m in json.loads(t)["messages"]] == [1, 2]
    await outbox.stop()

    frames: list[bytes] = []

    async def binary_send(message: dict) -> None:
        frames.append(message["bytes"])

    outbox = Outbox(binary_send, max_pending=10, max_replies=10, write_now=writer)
    outbox.set_encode(lambda key, text: text.encode())
    outbox.start()
    await settle()
    calls = writer.calls
    outbox.offer("quote.1", "x")
    await settle()
    assert writer.calls == calls and frames == [b"x"]
    await outbox.stop()


async def test_a_writer_that_raises_is_a_refusal_and_the_update_goes_through_send():
    send = Recorder()

    def closing(text: str) -> bool:
        raise RuntimeError("unable to perform operation: the handler is closed")

    outbox = Outbox(send, max_pending=10, max_replies=10, write_now=closing)
    outbox.start()
    await settle()
    outbox.offer("quote.1", "a1")  # must not raise into the hub's loop over subscribers
    assert dict(outbox.pending) == {"quote.1": "a1"}
    await settle()
    assert send.texts == ["a1"]
    outbox.set_batch(20)  # the batch clock's frames: refused by the writer, sent by send
    for i in range(1, 4):
        outbox.offer(f"quote.{i}", str(i))
        await asyncio.sleep(0.03)
    await asyncio.sleep(0.1)
    assert [m for t in send.texts[1:] for m in json.loads(t)["messages"]] == [1, 2, 3]
    await outbox.stop()
