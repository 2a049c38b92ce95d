"""The in-process tick store of the embedded mode (one process, no Redis).

Same behaviour as the Redis store, bounded: ticks and recent bars are trimmed by age, each
instrument's quote history (for ``/ws`` resume) by length and age, and the persist queue is
capped (when the saver stops for long, the oldest unsaved bars are dropped and counted in
``dropped``, loudly, instead of growing without bound).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict, deque
from dataclasses import replace

from marketdata.live.types import Bar, Quote, Tick

from .base import (
    BAR_RETENTION_MS,
    TICK_RETENTION_MS,
    PersistEntry,
    QuoteResume,
    StoreBatch,
    TickStore,
    TickStoreState,
    history_limits,
    resume_of,
)

logger = logging.getLogger(__name__)

PERSIST_CAP = 500_000


class MemoryTickStore(TickStore):
    """Dicts and deques behind the tick store interface."""

    def __init__(
        self,
        persist_cap: int = PERSIST_CAP,
        *,
        history_len: int | None = None,
        history_age_s: float | None = None,
    ) -> None:
        default_len, default_age_s = history_limits()
        self.history_len = default_len if history_len is None else history_len
        self.history_age_s = default_age_s if history_age_s is None else history_age_s
        self.quotes: dict[int, Quote] = {}
        # instrument id -> (written at, wall-clock ms; quote), oldest first
        self.history: dict[int, deque[tuple[int, Quote]]] = {}
        self.open_bars: dict[int, Bar] = {}
        self.cumulative: dict[int, int] = {}
        self.ticks: dict[int, deque[Tick]] = {}
        self.bars: dict[int, dict[int, Bar]] = {}
        self._persist: OrderedDict[str, Bar] = OrderedDict()
        self._pending: dict[str, tuple[str, float]] = {}  # entry id -> (consumer, delivered at)
        self._ids = itertools.count(1)
        self._persist_cap = persist_cap
        self._new_entries = asyncio.Event()
        self.dropped = 0

    async def write(self, batch: StoreBatch) -> None:
        # Windows are measured in data time (the newest item). Copies: the engine keeps
        # mutating its own objects, a store must hold snapshots.
        now_ms = int(time.time() * 1000)
        for q in batch.quotes:
            q = self.quotes[q.instrument_id] = replace(q)
            if self.history_len > 0:
                history = self.history.get(q.instrument_id)
                if history is None:
                    history = self.history[q.instrument_id] = deque(maxlen=self.history_len)
                history.append((now_ms, q))
        self.cumulative.update(batch.cumulative)
        for bar in batch.closed_bars:
            self.open_bars.pop(bar.instrument_id, None)
            bar = replace(bar)
            self._persist[f"{int(time.time() * 1000)}-{next(self._ids)}"] = bar
            recent = self.bars.setdefault(bar.instrument_id, {})
            recent[bar.ts] = bar
            for ts in [ts for ts in recent if ts < bar.ts - BAR_RETENTION_MS]:
                del recent[ts]
        for bar in batch.open_bars:
            self.open_bars[bar.instrument_id] = replace(bar)
        for t in batch.ticks:
            dq = self.ticks.setdefault(t.instrument_id, deque())
            dq.append(t)
            while dq and dq[0].ts < t.ts - TICK_RETENTION_MS:
                dq.popleft()
        while len(self._persist) > self._persist_cap:
            entry_id, _ = self._persist.popitem(last=False)
            self._pending.pop(entry_id, None)
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.error("memory persist queue full: %d unsaved bars dropped so far", self.dropped)
        if batch.closed_bars:
            self._new_entries.set()

    async def load_state(self) -> TickStoreState:
        return TickStoreState(
            {i: replace(q) for i, q in self.quotes.items()},
            {i: replace(b) for i, b in self.open_bars.items()},
            dict(self.cumulative),
        )

    async def latest_quotes(self, instrument_ids: list[int]) -> dict[int, Quote]:
        return {i: self.quotes[i] for i in instrument_ids if i in self.quotes}

    async def quotes_since(self, since: dict[int, int]) -> dict[int, QuoteResume]:
        oldest_ms = int(time.time() * 1000) - int(self.history_age_s * 1000)
        out = {}
        for instrument_id, last_seen in since.items():
            history = self.history.get(instrument_id, ())
            newest_first = (q for at, q in reversed(history) if at >= oldest_ms)
            out[instrument_id] = resume_of(last_seen, self.quotes.get(instrument_id), newest_first)
        return out

    async def recent_bars(self, instrument_id: int, start_ms: int, end_ms: int) -> list[Bar]:
        by_ts = {ts: b for ts, b in self.bars.get(instrument_id, {}).items() if start_ms <= ts < end_ms}
        open_bar = self.open_bars.get(instrument_id)
        if open_bar and start_ms <= open_bar.ts < end_ms:
            by_ts[open_bar.ts] = open_bar
        return [by_ts[k] for k in sorted(by_ts)]

    async def recent_ticks(self, instrument_id: int, start_ms: int) -> list[Tick]:
        return [t for t in self.ticks.get(instrument_id, ()) if t.ts >= start_ms]

    async def persist_read(self, consumer: str, count: int, block_ms: int = 0) -> list[PersistEntry]:
        fresh = [eid for eid in self._persist if eid not in self._pending][:count]
        if not fresh and block_ms:
            self._new_entries.clear()
            try:
                async with asyncio.timeout(block_ms / 1000):
                    await self._new_entries.wait()
            except TimeoutError:
                return []
            fresh = [eid for eid in self._persist if eid not in self._pending][:count]
        now = time.monotonic()
        for eid in fresh:
            self._pending[eid] = (consumer, now)
        return [PersistEntry(eid, self._persist[eid]) for eid in fresh]

    async def persist_claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[PersistEntry]:
        now = time.monotonic()
        stale = [eid for eid, (_c, at) in self._pending.items() if (now - at) * 1000 >= min_idle_ms][:count]
        for eid in stale:
            self._pending[eid] = (consumer, now)
        return [PersistEntry(eid, self._persist[eid]) for eid in stale if eid in self._persist]

    async def persist_ack(self, entry_ids: list[str]) -> None:
        for eid in entry_ids:
            self._pending.pop(eid, None)
            self._persist.pop(eid, None)

    async def persist_lag(self) -> dict:
        oldest = min((b.ts for b in self._persist.values()), default=None)
        return {"pending": len(self._persist), "oldest_ms": oldest}
