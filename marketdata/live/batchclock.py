"""One timer per batch interval and event loop, releasing every batched outbox whose window has ended.

A batched outbox (``Outbox.set_batch``) that has just sent a ``batch`` frame holds: live
updates then only replace what its next frame will carry (``pending[key] = text``), with no
wake-up, no future and no timer of its own. The clock of its interval ticks every
``interval`` seconds while some outbox holds, and at each tick releases the outboxes whose
window has ended: those with something waiting send one frame, from the tick itself when
their sender is idle, the others go back to sending their next update at once. Under load
that is one timer callback per interval for the whole process and no task wake-up at all,
instead of a timer per client and two wake-ups of its sender per window.

Ticks keep their phase (``tick + interval``): a client released at a tick may send again at
the next one, so its frames are ``interval`` apart however late its sender ran. A late loop
skips the ticks it missed rather than firing them in a burst.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

logger = logging.getLogger(__name__)


class Held(Protocol):
    """An outbox the clock can release (``Outbox``)."""

    next_batch: float

    def release(self, next_batch: float) -> None: ...


class BatchClock:
    """The outboxes of one batch interval on one event loop that wait for their window to end."""

    __slots__ = ("__weakref__", "_handle", "_loop", "_next", "held", "interval")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self.interval = interval
        self.held: set[Held] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def hold(self, outbox: Held) -> None:
        """Release ``outbox`` at the first tick at or after its ``next_batch``."""
        self.held.add(outbox)
        if self._handle is None:
            self._next = max(self._loop.time(), outbox.next_batch)
            self._handle = self._loop.call_at(self._next, self._tick)

    def discard(self, outbox: Held) -> None:
        """Forget ``outbox`` (batching turned off or changed, connection closed)."""
        self.held.discard(outbox)

    def _tick(self) -> None:
        tick = self._next
        following = tick + self.interval
        now = self._loop.time()
        if following <= now:  # the loop ran late: skip the ticks it missed
            following = now + self.interval
        held = self.held
        due = [outbox for outbox in held if outbox.next_batch <= tick]
        for outbox in due:
            held.discard(outbox)
            try:
                outbox.release(following)
            except Exception:
                logger.exception("releasing a batched websocket outbox failed")
        if held:
            self._next = following
            self._handle = self._loop.call_at(following, self._tick)
        else:
            self._handle = None


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, BatchClock]] = weakref.WeakKeyDictionary()


def batch_clock(interval: float) -> BatchClock:
    """The running loop's clock for ``interval`` seconds, created on first use."""
    loop = asyncio.get_running_loop()
    clocks = _clocks.get(loop)
    if clocks is None:
        clocks = _clocks[loop] = {}
    clock = clocks.get(interval)
    if clock is None:
        clock = clocks[interval] = BatchClock(loop, interval)
    return clock
