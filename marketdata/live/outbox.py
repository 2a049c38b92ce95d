"""A WebSocket connection's outbound side: bounded, conflating, drained by one sender task.

Replies (``info``, ``error``, ``pong``) keep their order and go first. Live updates are
keyed by channel: a newer update replaces one not sent yet (conflation), so a slow client
gets the latest state of each instrument instead of an ever-growing backlog, and its memory
is bounded by the number of channels it watches.

A resumed channel (``subscribe`` with ``since``) is the exception: its missed updates must
all arrive, in order. Between ``begin_resume`` and ``end_resume`` its live updates are held
in order instead of conflated; ``end_resume`` queues the replayed updates, then the held ones
newer than them, on the replay queue (sent after the replies, before other live updates,
never conflated, bounded by ``max_replay``). A seed-protocol connection sets ``encode``:
its live updates then leave as binary frames, built when they are sent (``ws_seed``).

Batched frames (``set_batch``, a client's ``batch_ms``): the data messages waiting (replayed,
then pending, each still conflated per channel) leave as ONE text frame
``{"message_type":"batch","messages":[...]}`` at most every ``batch_ms``. The frame is the
messages' own text joined, never parsed or re-encoded; replies still go first, each in its own
frame, at once. Fewer frames is most of the saving: every frame costs the server a
``transport.write`` (a system call) and the WebSocket framing. After a frame the outbox holds:
updates only replace what waits, and the process's clock of its interval (``batchclock``) ends
the window of all such outboxes at once, sending each idle one's frame itself (``release``).

Back-pressure differs by server. uvicorn's ``send`` waits while the socket's buffer is
above its high-water mark, so a slow client makes our sender wait and updates conflate here.
daphne's ``send`` never waits: it hands the frame to Twisted, which buffers without limit.
For daphne the sender therefore reads the size of Twisted's write buffer (see
``transport_backlog_probe``) and waits itself while it is above ``WS_TRANSPORT_BUFFER_BYTES``.
Either way ``busy_since`` tells the hub's watchdog how long the client has made no progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from marketdata.live.batchclock import BatchClock, batch_clock

logger = logging.getLogger(__name__)

BACKLOG_POLL_S = 0.02

# An ASGI scope extension a server may offer (``scope["extensions"][WRITE_TEXT_EXTENSION]``):
# a callable ``write(text) -> bool`` that writes one text frame at once, or returns False (the
# connection is not open, or its transport is pushing back) and writes nothing; the caller then
# uses ``send``. ``marketapp.uvicorn_ws`` offers it.
WRITE_TEXT_EXTENSION = "marketapp.write_text"

BATCH_HEAD = '{"message_type":"batch","messages":['
BATCH_TAIL = "]}"


class Outbox:
    """What one connection still has to send, and the task that sends it."""

    # One per connection: slots keep an idle connection small (see README "Performance").
    __slots__ = (
        "_books",
        "_clock",
        "_flight",
        "_resume_gap",
        "_resuming",
        "_send",
        "_snapshot_due",
        "_snapshot_seq",
        "_task",
        "_waiter",
        "_write_now",
        "_writer",
        "backlog",
        "backlog_limit",
        "batch_s",
        "busy_since",
        "conflated",
        "dropped",
        "encode",
        "full_since",
        "holding",
        "max_pending",
        "max_replay",
        "max_replies",
        "next_batch",
        "pending",
        "replay",
        "replies",
        "sent",
    )

    def __init__(
        self,
        send: Callable[[dict], Awaitable[None]],
        *,
        max_pending: int,
        max_replies: int,
        backlog: Callable[[], int] | None = None,
        backlog_limit: int = 256 * 1024,
        encode: Callable[[str, str], bytes | None] | None = None,
        max_replay: int | None = None,
        write_now: Callable[[str], bool] | None = None,
    ) -> None:
        self._send = send
        # The server's synchronous text-frame writer (WRITE_TEXT_EXTENSION), when it has one:
        # an update for an idle connection is written from ``offer``, without waking the sender.
        # ``_write_now`` is that writer while frames carry one text message each (no batch
        # window, no binary encoding), else None: ``offer`` checks one slot.
        self._writer = write_now
        self._write_now = write_now if encode is None else None
        # Turns a live update (key, text) into a binary frame when it is sent (the seed framing);
        # None sends the text as it is. Returning None skips the update.
        self.encode = encode
        self.max_pending = max_pending
        self.max_replies = max_replies
        self.backlog = backlog
        self.backlog_limit = backlog_limit
        # Created with the first reply: most connections only ever get live updates.
        self.replies: deque[str] | None = None
        # key -> newest text, oldest key first (a plain dict keeps insertion order and is cheaper
        # than an OrderedDict for the hub's store per subscriber and the batch frame's join)
        self.pending: dict[str, str] = {}
        # (key, text) of resumed channels' updates, sent in order and never conflated
        # Created when first needed: most connections never resume (an idle connection's
        # memory is mostly these containers, see README "Performance").
        self.replay: deque[tuple[str, str]] | None = None
        self.max_replay = 10 * max_pending if max_replay is None else max_replay
        # key -> its live updates held, in order, while the channel's history is read
        self._resuming: dict[str, list[str]] | None = None
        self._resume_gap: set[str] | None = None
        self._snapshot_due: set[str] | None = None
        # key -> seq of the snapshot queued for it: live updates not newer than it are dropped
        self._snapshot_seq: dict[str, int] | None = None
        # True while one of the resume or snapshot books above may hold a key: offers then take
        # the careful path (``_offer_booked``); otherwise the plain one, with nothing to look up.
        self._books = False
        # The sender's wake-up: a bare future while it waits (an asyncio.Event carries a deque)
        self._waiter: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        # monotonic time since when a send (or the transport backlog) has not completed
        self.busy_since: float | None = None
        # monotonic time since when updates on new channels are being dropped
        self.full_since: float | None = None
        self.sent = 0
        self.conflated = 0
        self.dropped = 0
        # Batched frames: seconds between two batch frames (0: one message per frame), when the
        # next one may go, and whether the sender waits for its window to end (offers then do
        # not wake it: they only replace what the batch will carry). The process's clock of that
        # interval (``batchclock``) ends the window, for every client at once.
        self.batch_s = 0.0
        self.next_batch = 0.0
        self.holding = False
        self._clock: BatchClock | None = None
        # A batch frame the clock began sending whose ``send`` had to wait: the sender waits for it
        self._flight: asyncio.Task | None = None

    # --- producers (never block) -----------------------------------------------------------------
    def offer(self, key: str, text: str) -> None:
        """Queue a live update; replaces a pending update with the same key.

        The hub calls this for every subscriber of every update: the plain path does one
        lookup and one store. Replacing a pending update wakes nobody (its sender is already
        awake or holding for the window).
        """
        if self._books:
            self._offer_booked(key, text)
            return
        pending = self.pending
        if key in pending:
            pending[key] = text
            self.conflated += 1
        elif self._write_now is not None and not pending and self._waiter is not None and self._idle(text):
            return
        elif len(pending) < self.max_pending:
            pending[key] = text
            if not self.holding:
                self._wake()
        else:
            self._drop()

    def _idle(self, text: str) -> bool:
        """Write ``text`` now when nothing else is on its way (False: the update takes the queue).

        Called with nothing pending and the sender parked: no reply, replay, batch window or
        frame in flight may go first, and the server writes only when the connection is open
        and its transport is not pushing back.
        """
        if self.replies or self.replay or self._flight is not None:
            return False
        if not self._written(self._write_now, text):
            return False
        self.sent += 1
        return True

    @staticmethod
    def _written(writer: Callable[[str], bool], text: str) -> bool:
        """``writer(text)``, where a writer that raises (a transport closing under it) counts as a refusal.

        The hub calls ``offer`` for every subscriber in one loop: nothing one connection's
        transport does may reach it. The refused text takes the queue, whose ``send`` fails in
        the sender task, which logs it and leaves the clean-up to the connection's receive side.
        """
        try:
            return writer(text)
        except Exception as exc:
            logger.debug("websocket direct write failed: %r", exc)
            return False

    def _drop(self) -> None:
        self.dropped += 1
        if self.full_since is None:
            self.full_since = time.monotonic()

    def _offer_booked(self, key: str, text: str) -> None:
        """``offer`` while a resume holds updates or a snapshot is due or was just sent."""
        if self._resuming and key in self._resuming:
            held = self._resuming[key]
            if len(held) < self.max_pending:
                held.append(text)
            else:  # a read that never ends: keep the newest, and say the resume has a gap
                held[-1] = text
                if self._resume_gap is None:
                    self._resume_gap = set()
                self._resume_gap.add(key)
            return
        if self._snapshot_seq and key in self._snapshot_seq:
            # The snapshot read raced the engine: an update it already contains must not
            # follow it (the client would see the same seq twice, or an older one).
            if _seq_of(text) <= self._snapshot_seq[key]:
                return
            del self._snapshot_seq[key]
        pending = self.pending
        if key in pending:
            pending[key] = text
            self.conflated += 1
        elif len(pending) < self.max_pending:
            pending[key] = text
        else:
            self._drop()
            return
        if self._snapshot_due:
            self._snapshot_due.discard(key)
        if not (self._resuming or self._snapshot_seq or self._snapshot_due):
            self._books = False
        if not self.holding:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def reply(self, text: str) -> bool:
        """Queue a reply in order; False when the client has stopped reading its replies."""
        if self.replies is None:
            self.replies = deque()
        elif len(self.replies) >= self.max_replies:
            return False
        self.replies.append(text)
        self._wake()
        return True

    def expect_snapshot(self, key: str) -> None:
        """Call before joining a group: a live update arriving first makes the snapshot moot."""
        if self._snapshot_due is None:
            self._snapshot_due = set()
        self._snapshot_due.add(key)
        self._books = True

    def snapshot(self, key: str, text: str, seq: int | None = None) -> None:
        """Queue a snapshot unless a (newer) live update for ``key`` came in since ``expect_snapshot``.

        With ``seq`` (the quote's), later live updates with a seq not above it are dropped.
        """
        if self._snapshot_due and key in self._snapshot_due:
            self._snapshot_due.discard(key)
            self.offer(key, text)
            if seq is not None:
                if self._snapshot_seq is None:
                    self._snapshot_seq = {}
                self._snapshot_seq[key] = seq
                self._books = True

    def begin_resume(self, key: str) -> None:
        """Call before joining a group and reading its history: hold its live updates in order.

        A pending update of the channel is dropped: it is in the history read that follows.
        """
        self._forget(key)
        self.pending.pop(key, None)
        if self._resuming is None:
            self._resuming = {}
        self._resuming[key] = []
        self._books = True

    def replay_room(self) -> int:
        """How many more updates the replay queue takes."""
        return max(0, self.max_replay - len(self.replay or ()))

    def end_resume(self, key: str, texts: list[str], last_seq: int) -> bool:
        """Queue ``texts`` (replayed updates, or a snapshot, up to ``last_seq``), then the held updates newer.

        Later live updates not newer than the last one queued are dropped. False when the
        channel was left meanwhile, or when held updates had to be conflated (a gap).
        """
        held = self._resuming.pop(key, None) if self._resuming else None
        if held is None:
            return False
        replay = self.replay
        if replay is None:
            replay = self.replay = deque()
        replay.extend((key, text) for text in texts)
        for text in held:
            seq = _seq_of(text)
            if seq > last_seq:
                replay.append((key, text))
                last_seq = seq
        if last_seq >= 0:
            if self._snapshot_seq is None:
                self._snapshot_seq = {}
            self._snapshot_seq[key] = last_seq
            self._books = True
        if replay and not self.holding:
            self._wake()
        gap = bool(self._resume_gap) and key in self._resume_gap
        if gap:
            self._resume_gap.discard(key)
        return not gap

    def discard(self, group: str) -> None:
        """Drop pending updates of a channel the client left (bar keys carry a ``@minute`` suffix)."""
        self._forget(group)
        if self._resuming:
            self._resuming.pop(group, None)
        if self.replay and any(key == group for key, _ in self.replay):
            self.replay = deque(item for item in self.replay if item[0] != group)
        prefix = group + "@"
        for key in [k for k in self.pending if k == group or k.startswith(prefix)]:
            del self.pending[key]

    def _forget(self, key: str) -> None:
        """Drop what is remembered about ``key``'s snapshot and resume gap."""
        if self._snapshot_due:
            self._snapshot_due.discard(key)
        if self._snapshot_seq:
            self._snapshot_seq.pop(key, None)
        if self._resume_gap:
            self._resume_gap.discard(key)

    def set_encode(self, encode: Callable[[str, str], bytes | None] | None) -> None:
        """Send live updates as ``encode(key, text)`` binary frames from now on (None: as text)."""
        self.encode = encode
        self._write_now = self._writer if not self.batch_s and encode is None else None

    def set_batch(self, batch_ms: int) -> None:
        """Send data messages as one ``batch`` frame at most every ``batch_ms`` (0: one message per frame)."""
        self.batch_s = batch_ms / 1000
        self.next_batch = 0.0
        self._write_now = self._writer if not batch_ms and self.encode is None else None
        self._unclock()
        if self.holding:
            self.holding = False
            self._wake()

    def release(self, next_batch: float) -> None:
        """The batch clock's tick: the window has ended; send what waits now, the next frame at ``next_batch``.

        When the sender is idle (no reply to send, no frame in flight) and the server's ``send``
        never waits for the transport by itself (no ``backlog`` probe to poll), the frame is sent
        from here, sparing the sender a wake-up per window: by the server's writer
        (``WRITE_TEXT_EXTENSION``) when it has one and the transport takes it, else by ``send``.
        """
        self.holding = False
        if not (self.pending or self.replay):
            return
        self.next_batch = next_batch
        if self._waiter is None or self.replies or self.backlog is not None or self._flight is not None:
            self._wake()
            return
        self.holding = True
        self._clock.hold(self)
        text = self._batch_text()
        writer = self._writer
        if writer is not None and self._written(writer, text):  # the server's writer: no send coroutine per frame
            self.sent += 1
            return
        self._send_now({"type": "websocket.send", "text": text})

    def _send_now(self, event: dict) -> None:
        """Run ``send(event)`` here; one that has to wait (back-pressure) finishes in a task of its own."""
        self.busy_since = time.monotonic()
        coro = self._send(event)
        try:
            first = coro.send(None)
        except StopIteration:
            self.busy_since = None
            self.sent += 1
            return
        except Exception as exc:
            self.busy_since = None
            logger.debug("websocket send failed: %r", exc)
            return
        self._flight = asyncio.ensure_future(_Resumed(coro, first).wait())
        self._flight.add_done_callback(self._landed)

    def _landed(self, flight: asyncio.Task) -> None:
        self._flight = None
        self.busy_since = None
        if flight.cancelled():
            return
        if flight.exception() is not None:
            logger.debug("websocket send failed: %r", flight.exception())
            return
        self.sent += 1
        self._wake()

    def _unclock(self) -> None:
        if self._clock is not None:
            self._clock.discard(self)
            self._clock = None

    def _batch_text(self) -> str:
        """The ``batch`` frame of what waits: replayed messages in order, then pending ones (max_pending at most)."""
        pending = self.pending
        replay = self.replay
        if not replay and len(pending) <= self.max_pending:  # the usual frame: everything pending
            text = BATCH_HEAD + ",".join(pending.values()) + BATCH_TAIL
            pending.clear()
            self.full_since = None
            return text
        parts: list[str] = []
        room = self.max_pending
        while replay and room:
            parts.append(replay.popleft()[1])
            room -= 1
        if pending and room:
            if len(pending) <= room:
                parts.extend(pending.values())
                pending.clear()
            else:
                for _ in range(room):
                    parts.append(_pop_oldest(pending)[1])
            self.full_since = None
        return BATCH_HEAD + ",".join(parts) + BATCH_TAIL

    # --- the sender ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ws-sender")

    async def stop(self) -> None:
        self._unclock()
        self.holding = False
        if self._flight is not None:
            self._flight.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):  # cancelled or already failed: nothing left to send
                await self._task
            self._task = None

    async def _run(self) -> None:
        send = self._send
        pending = self.pending
        backlog = self.backlog
        limit = self.backlog_limit
        loop = asyncio.get_running_loop()
        monotonic = time.monotonic
        try:
            while True:
                if self._flight is not None:  # a batch frame the clock began is still being sent
                    self._waiter = loop.create_future()
                    await self._waiter
                    continue
                if self.replies:
                    event = {"type": "websocket.send", "text": self.replies.popleft()}
                    if not self.replies:
                        self.replies = None  # an idle connection keeps no empty deque (~760 bytes)
                elif self.batch_s and (pending or self.replay):
                    if self.holding:
                        # The window has not ended: the clock releases us (replies still wake
                        # the sender and go at once).
                        self._waiter = loop.create_future()
                        await self._waiter
                        continue
                    now = loop.time()
                    if self.next_batch <= now:  # the first after a quiet window goes at once
                        self.next_batch = now + self.batch_s
                    event = {"type": "websocket.send", "text": self._batch_text()}
                    # Hold until the window ends: updates meanwhile only replace what waits.
                    self.holding = True
                    clock = self._clock
                    if clock is None:
                        clock = self._clock = batch_clock(self.batch_s)
                    clock.hold(self)
                elif self.replay:
                    event = {"type": "websocket.send", "text": self.replay.popleft()[1]}
                elif pending:
                    key, text = _pop_oldest(pending)
                    self.full_since = None
                    encode = self.encode
                    if encode is None:
                        event = {"type": "websocket.send", "text": text}
                    else:
                        frame = encode(key, text)
                        if frame is None:
                            continue
                        event = {"type": "websocket.send", "bytes": frame}
                else:
                    self._waiter = loop.create_future()
                    await self._waiter
                    continue
                self.busy_since = monotonic()
                await send(event)
                if backlog is not None and backlog() > limit:
                    await self._drain(backlog, limit)
                self.busy_since = None
                self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The client went away under us (uvicorn raises, daphne drops silently); the
            # connection's receive side sees the disconnect and cleans up.
            logger.debug("websocket send failed: %r", exc)

    @staticmethod
    async def _drain(backlog: Callable[[], int], limit: int) -> None:
        # Polling: Twisted signals a drained buffer only to a registered producer, and the
        # transport may already have one (the HTTP channel it was upgraded from).
        while backlog() > limit:  # noqa: ASYNC110
            await asyncio.sleep(BACKLOG_POLL_S)


class _Resumed:
    """Finishes, in a task, a coroutine whose first step ran by hand and yielded ``first`` (what it waits for)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro, first) -> None:
        self.coro = coro
        self.first = first

    async def wait(self) -> None:
        await self

    def __await__(self):
        coro, waiting = self.coro, self.first
        self.first = None
        while True:
            try:
                yield waiting
            except BaseException as exc:  # cancelled: the coroutine gets it where it waits
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(None)
                except StopIteration:
                    return


def _pop_oldest(pending: dict[str, str]) -> tuple[str, str]:
    """Remove and return the oldest ``(key, text)`` (a dict's first key is its oldest insertion)."""
    key = next(iter(pending))
    return key, pending.pop(key)


def _seq_of(text: str) -> int:
    """The ``seq`` of a quote update (the engine writes it last), or -1."""
    at = text.rfind('"seq":')
    if at < 0:
        return -1
    start = at + 6
    end = start
    while end < len(text) and (text[end].isdigit() or text[end] == "-"):
        end += 1
    try:
        return int(text[start:end])
    except ValueError:
        return -1


def raw_send(send):
    """The server's own ``send`` under wrappers that set ``__wrapped__`` (at most eight deep).

    Here, below the middleware, so that both the probe and ``ws_middleware`` (which hands the
    consumer this callable for its frames) unwrap the same way.
    """
    for _ in range(8):
        inner = getattr(send, "__wrapped__", None)
        if inner is None:
            break
        send = inner
    return send


def transport_backlog_probe(send) -> Callable[[], int] | None:
    """How many bytes the server still holds for this client, for servers whose send never waits.

    daphne passes ``functools.partial(Server.handle_reply, protocol)`` as ``send``; the
    protocol's Twisted transport keeps the unsent bytes in ``dataBuffer`` (from ``offset``)
    plus ``_tempDataLen``. These are Twisted internals (stable for many years); when they
    are missing, or for any other server, this returns None and the sender relies on the
    server's own back-pressure. ASGI middleware that wraps ``send`` (the request id's) leaves
    the server's callable in ``__wrapped__``, which is followed (``raw_send``).
    """
    send = raw_send(send)
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    if _write_buffer(getattr(protocol, "transport", None)) is None:
        return None

    def backlog() -> int:
        return _write_buffer(getattr(protocol, "transport", None)) or 0

    return backlog


def _write_buffer(transport) -> int | None:
    # TLS wraps the TCP transport; the bytes wait in the innermost one.
    for _ in range(4):
        if transport is None:
            return None
        try:
            return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        except (AttributeError, TypeError):
            transport = getattr(transport, "transport", None)
    return None
