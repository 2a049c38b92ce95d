"""The interface every provider feed client implements, and what they share.

A client owns its network I/O inside the event loop (no threads), turns provider frames into
``Tick`` objects and hands them out through a bounded queue: when the engine falls behind,
the client's reader waits, so the provider's socket applies back-pressure and nothing is
dropped silently.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from ingestion.ticks import Tick

logger = logging.getLogger(__name__)

MALFORMED_LOG_EVERY_S = 60.0
# A connected feed whose every frame is refused for this long is unhealthy (FEED_REFUSED_UNHEALTHY_S).
DEFAULT_REFUSED_UNHEALTHY_S = 30.0


class FeedStatus(enum.StrEnum):
    """Where a feed client is in its life."""

    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    DEGRADED = "degraded"  # connected, but every frame for a while was refused (reported, never set)
    BACKING_OFF = "backing_off"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One instrument as a provider knows it."""

    instrument_id: int
    symbol: str
    exchange: str
    search_code: str = ""
    segment: str = ""
    reference_price: float | None = None  # last known close, where the simulator starts
    tick_size: float = 0.01


@dataclass
class FeedStats:
    """Counters a client keeps for status pages and tests."""

    ticks: int = 0
    malformed: int = 0
    unknown: int = 0  # frames for instruments not subscribed
    refused: int = 0  # frames that arrived but yielded no tick (malformed, no valid price)
    reconnects: int = 0
    last_tick_at: float | None = None
    connected_at: float | None = None
    status_changed_at: float = field(default_factory=time.monotonic)


class FeedError(Exception):
    """A provider refused us for a reason that retrying will not fix (credentials, plan)."""


class Backoff:
    """Exponential backoff with full jitter: base * 2**attempt, capped, randomised."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def next_delay(self) -> float:
        delay = self._rng.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class FeedClient(ABC):
    """A provider's live feed: connect, subscribe, and read normalized ticks.

    Subclasses implement ``_run`` (the connection loop) and the subscription hooks; this
    base keeps the desired subscription set, the status, the counters and the tick queue.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        code: str,
        settings: dict | None = None,
        credentials: dict | None = None,
        queue_size: int = 10_000,
        refused_unhealthy_s: float = DEFAULT_REFUSED_UNHEALTHY_S,
    ) -> None:
        self.code = code
        self.refused_unhealthy_s = refused_unhealthy_s
        self.settings = dict(settings or {})
        self.credentials = dict(credentials or {})
        self.subscriptions: dict[int, Subscription] = {}
        self.status = FeedStatus.IDLE
        self.last_error: str = ""
        self.stats = FeedStats()
        self._queue: asyncio.Queue[Tick] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._malformed_logged: dict[str, float] = {}
        # The current run of refused frames with no tick accepted: when it began, its last frame.
        self._refused_since: float | None = None
        self._last_refused_at = 0.0
        self._last_refused_reason = ""
        self._degraded_logged = False

    # --- life cycle ---------------------------------------------------------------------
    async def connect(self) -> None:
        """Start the connection loop in the background (returns at once)."""
        if self._task and not self._task.done():
            return
        self._stopping = False
        self._task = asyncio.create_task(self._guarded_run(), name=f"feed-{self.code}")

    async def disconnect(self) -> None:
        """Stop the loop and close the connection."""
        self._stopping = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                # Swallow only the cancellation we caused, never one aimed at our caller.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            self._task = None
        self._refused_since = None
        self.set_status(FeedStatus.STOPPED)

    async def _guarded_run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except FeedError as exc:
            self.set_status(FeedStatus.FAILED, str(exc))
        except Exception as exc:  # a bug must show in the status, not vanish in a task
            logger.exception("feed %s crashed", self.code)
            self.set_status(FeedStatus.FAILED, f"{type(exc).__name__}: {exc}")

    @abstractmethod
    async def _run(self) -> None:
        """Connect, subscribe, read frames and reconnect until cancelled."""

    # --- subscriptions ------------------------------------------------------------------
    async def subscribe(self, subscriptions: Iterable[Subscription]) -> None:
        """Add instruments to the stream (sent at once when connected, else on connect)."""
        added = [s for s in subscriptions if s.instrument_id not in self.subscriptions]
        for sub in added:
            self.subscriptions[sub.instrument_id] = sub
        if added:
            await self._on_subscribe(added)

    async def unsubscribe(self, instrument_ids: Iterable[int]) -> None:
        """Remove instruments from the stream."""
        removed = [self.subscriptions.pop(i) for i in list(instrument_ids) if i in self.subscriptions]
        if removed:
            await self._on_unsubscribe(removed)

    async def _on_subscribe(self, added: list[Subscription]) -> None:  # noqa: B027 - optional hook
        """Tell the provider about new instruments if connected (optional)."""

    async def _on_unsubscribe(self, removed: list[Subscription]) -> None:  # noqa: B027 - optional hook
        """Tell the provider to stop sending these instruments (optional)."""

    # --- output -------------------------------------------------------------------------
    async def emit(self, tick: Tick) -> None:
        """Queue a tick for the engine; waits (back-pressure) when the queue is full."""
        self.stats.ticks += 1
        self.stats.last_tick_at = time.time()
        if self._refused_since is not None:
            self._refused_since = None
            if self._degraded_logged:
                self._degraded_logged = False
                logger.warning("feed %s: ticks accepted again; healthy", self.code)
        await self._queue.put(tick)

    async def emit_many(self, ticks: list[Tick]) -> None:
        """Queue ticks in order, as ``emit`` one by one would (waiting only when the queue is full)."""
        if not ticks:
            return
        await self.emit(ticks[0])
        queue = self._queue
        self.stats.ticks += len(ticks) - 1
        for tick in ticks[1:]:
            if queue.full():
                await queue.put(tick)
            else:
                queue.put_nowait(tick)

    async def ticks(self) -> AsyncIterator[Tick]:
        """The normalized ticks, in arrival order."""
        while True:
            yield await self._queue.get()

    def get_nowait_batch(self, limit: int = 1000) -> list[Tick]:
        """Up to ``limit`` queued ticks without waiting (for batch processing)."""
        out: list[Tick] = []
        while len(out) < limit:
            try:
                out.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return out

    async def next_batch(self, limit: int = 1000) -> list[Tick]:
        """Wait for at least one tick, then take what is queued, up to ``limit``."""
        first = await self._queue.get()
        return [first, *self.get_nowait_batch(limit - 1)]

    # --- status -------------------------------------------------------------------------
    def set_status(self, status: FeedStatus, error: str = "") -> None:
        if status != self.status:
            logger.info("feed %s: %s -> %s %s", self.code, self.status, status, error)
            self.stats.status_changed_at = time.monotonic()
        self.status = status
        if error:
            self.last_error = error
        if status == FeedStatus.STREAMING:
            self.stats.connected_at = time.time()

    def count_malformed(self, reason: str, frame: bytes | str = b"") -> None:
        """Count and log a frame that could not be parsed; the stream goes on.

        The log line is limited to one per reason a minute, so a feed that sends an unknown
        packet kind on every tick cannot flood the log.
        """
        self.stats.malformed += 1
        self.note_refused(reason)
        now = time.monotonic()
        key = reason.split(":", 1)[0][:60]
        if now - self._malformed_logged.get(key, -MALFORMED_LOG_EVERY_S) >= MALFORMED_LOG_EVERY_S:
            self._malformed_logged[key] = now
            logger.warning(
                "feed %s: malformed frame skipped (%s): %r [%d so far]",
                self.code,
                reason,
                frame[:80],
                self.stats.malformed,
            )

    def note_refused(self, reason: str) -> None:
        """Count a frame that arrived but yielded no tick (malformed, or no valid price).

        Frames that carry no tick by design (a previous close, a market status) are not
        refused; only an accepted tick ends the run of refusals (``degraded_reason``).
        """
        now = time.monotonic()
        self.stats.refused += 1
        if self._refused_since is None:
            self._refused_since = now
        self._last_refused_at = now
        self._last_refused_reason = reason[:80]

    def degraded_reason(self, now: float | None = None) -> str:
        """Why a connected feed is unhealthy, or "" when it is not.

        Unhealthy: frames kept arriving for ``refused_unhealthy_s`` and every one was refused.
        A feed that receives nothing at all (a quiet market, a closed session) is healthy; so
        is one whose refused frames stopped arriving for ``refused_unhealthy_s``.
        """
        since = self._refused_since
        if self.status != FeedStatus.STREAMING or since is None:
            return ""
        now = time.monotonic() if now is None else now
        window = self.refused_unhealthy_s
        if now - since < window or now - self._last_refused_at >= window:
            return ""
        reason = (
            f"all frames refused for {now - since:.0f}s (no tick accepted; last refused: {self._last_refused_reason})"
        )
        if not self._degraded_logged:
            self._degraded_logged = True
            logger.error("feed %s degraded: %s", self.code, reason)
        return reason

    @property
    def effective_status(self) -> FeedStatus:
        """``status``, except ``degraded`` while connected but refusing every frame."""
        return FeedStatus.DEGRADED if self.degraded_reason() else self.status

    @property
    def healthy(self) -> bool:
        """Connected and either accepting ticks or quiet (see ``degraded_reason``)."""
        return self.status == FeedStatus.STREAMING and not self.degraded_reason()

    def status_dict(self) -> dict:
        """A JSON-ready summary of this client's state."""
        degraded = self.degraded_reason()
        return {
            "code": self.code,
            "kind": self.kind,
            "status": str(FeedStatus.DEGRADED if degraded else self.status),
            "degraded_reason": degraded,
            "frames_refused": self.stats.refused,
            "last_error": self.last_error,
            "subscriptions": len(self.subscriptions),
            "ticks": self.stats.ticks,
            "malformed": self.stats.malformed,
            "unknown": self.stats.unknown,
            "reconnects": self.stats.reconnects,
            "last_tick_at": self.stats.last_tick_at,
        }
