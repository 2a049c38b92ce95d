"""The tick store interface shared by the Redis and in-memory implementations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from marketdata.live.types import Bar, Quote, Tick

# How long raw ticks and recent closed bars stay in the store (the saver persists bars long
# before this; the window is for readers and recovery, not the only copy).
TICK_RETENTION_MS = 60 * 60 * 1000
BAR_RETENTION_MS = 3 * 24 * 60 * 60 * 1000
# The per-instrument quote history that lets a reconnecting ``/ws`` client resume
# (``LIVE_RESUME_HISTORY_LEN`` quotes, none older than ``LIVE_RESUME_HISTORY_AGE_S``).
HISTORY_LEN = 500
HISTORY_AGE_S = 300.0


def history_limits() -> tuple[int, float]:
    """``(length, age in seconds)`` of the quote history, from settings."""
    from django.conf import settings

    return (
        int(getattr(settings, "LIVE_RESUME_HISTORY_LEN", HISTORY_LEN)),
        float(getattr(settings, "LIVE_RESUME_HISTORY_AGE_S", HISTORY_AGE_S)),
    )


@dataclass
class StoreBatch:
    """Everything one engine step changed, written to the store in one round trip."""

    ticks: list[Tick] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    open_bars: list[Bar] = field(default_factory=list)
    closed_bars: list[Bar] = field(default_factory=list)
    cumulative: dict[int, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ticks or self.quotes or self.open_bars or self.closed_bars or self.cumulative)


@dataclass
class TickStoreState:
    """What the engine needs back after a restart."""

    quotes: dict[int, Quote]
    open_bars: dict[int, Bar]
    cumulative: dict[int, int]


@dataclass(frozen=True)
class PersistEntry:
    """A closed bar waiting in the persist stream, with the id needed to acknowledge it."""

    entry_id: str
    bar: Bar


@dataclass(frozen=True)
class QuoteResume:
    """What a client whose last seen ``seq`` of an instrument was ``since`` missed.

    ``missed`` holds the quotes ``since + 1`` .. ``latest.seq`` in order (empty when nothing
    was missed), or is None when the history does not cover the gap: it was trimmed (length,
    age), or ``since`` is ahead of the latest seq (the engine lost its state and started over).
    ``latest`` is the current quote, the snapshot a client that cannot resume gets.
    """

    latest: Quote | None
    missed: list[Quote] | None

    @property
    def recovered(self) -> bool:
        return self.missed is not None


def resume_of(since: int, latest: Quote | None, newest_first: Iterable[Quote]) -> QuoteResume:
    """The ``QuoteResume`` of ``since``, from the stored quotes newest first (both stores use it).

    Recovered only when the history holds every seq from ``since + 1`` up to the latest one.
    """
    want = latest.seq if latest is not None else 0
    if since > want:
        return QuoteResume(latest, None)
    missed: list[Quote] = []
    for quote in newest_first:
        if want == since:
            break
        if quote.seq > want:
            continue
        if quote.seq != want:
            return QuoteResume(latest, None)
        missed.append(quote)
        want -= 1
    if want != since:
        return QuoteResume(latest, None)
    missed.reverse()
    return QuoteResume(latest, missed)


class TickStore(ABC):
    """Latest quotes, recent ticks and bars, and the persist stream of closed bars."""

    @abstractmethod
    async def write(self, batch: StoreBatch) -> None:
        """Apply one engine step atomically (quotes, bars, cumulative volumes, ticks)."""

    def prepare(self, batch: StoreBatch) -> object:
        """The step made independent of the engine's live objects, for ``write_prepared``.

        The engine prepares one step while the previous one is being written, and keeps
        mutating its quotes and bars meanwhile: what is prepared must be a snapshot.
        """
        return StoreBatch(
            ticks=list(batch.ticks),
            quotes=[replace(q) for q in batch.quotes],
            open_bars=[replace(b) for b in batch.open_bars],
            closed_bars=[replace(b) for b in batch.closed_bars],
            cumulative=dict(batch.cumulative),
        )

    async def write_prepared(self, prepared: object) -> None:
        """Write what ``prepare`` returned (same effect as ``write`` of the batch then)."""
        await self.write(prepared)

    @abstractmethod
    async def load_state(self) -> TickStoreState:
        """Quotes, open bars and cumulative volumes saved by the previous engine run."""

    @abstractmethod
    async def latest_quotes(self, instrument_ids: list[int]) -> dict[int, Quote]:
        """The latest quote of each instrument that has one."""

    @abstractmethod
    async def quotes_since(self, since: dict[int, int]) -> dict[int, QuoteResume]:
        """Per instrument id, the quotes after the client's last seen seq (``since``), if still held.

        Every quote write also appends the quote to its instrument's bounded history, in the
        same atomic step, so a reader sees either both or neither.
        """

    @abstractmethod
    async def recent_bars(self, instrument_id: int, start_ms: int, end_ms: int) -> list[Bar]:
        """Closed bars still in the store plus the open bar, in ``[start_ms, end_ms)``, ascending."""

    @abstractmethod
    async def recent_ticks(self, instrument_id: int, start_ms: int) -> list[Tick]:
        """Raw ticks since ``start_ms`` still inside the retention window."""

    # --- the persist stream (consumed by the saver) ------------------------------------
    @abstractmethod
    async def persist_read(self, consumer: str, count: int, block_ms: int = 0) -> list[PersistEntry]:
        """Claim up to ``count`` closed bars not yet handed to any consumer."""

    @abstractmethod
    async def persist_claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[PersistEntry]:
        """Take over bars a dead consumer read but never acknowledged."""

    @abstractmethod
    async def persist_ack(self, entry_ids: list[str]) -> None:
        """Mark bars as committed to the database and drop them from the stream."""

    @abstractmethod
    async def persist_lag(self) -> dict:
        """``{"pending": n, "oldest_ms": ts or None}``: bars not yet committed, and the oldest one's time."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
