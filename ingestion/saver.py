"""The saver: closed bars from the tick store's persist stream into the database.

At-least-once and idempotent: read a batch through the consumer group, upsert it in one
transaction (unique (instrument, interval, timestamp), so a replayed batch never duplicates),
acknowledge only after the commit, and take over entries a dead consumer left pending.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.db import close_old_connections, transaction

from ingestion.bars import Bar
from ingestion.tickstore import PersistEntry, TickStore
from marketdata.models import PriceHistoryIntraday

logger = logging.getLogger(__name__)

UPDATE_FIELDS = ["open", "high", "low", "close", "volume", "trade_count", "source", "updated_at"]


@dataclass
class FlushResult:
    """What one flush did."""

    saved: int = 0
    claimed: int = 0


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def bars_upsert(*, bars: list[Bar], provider_ids: dict[str, int] | None = None) -> int:
    """Insert or update 1m bars in one transaction; returns the number of rows written."""
    if not bars:
        return 0
    provider_ids = provider_ids or {}
    latest: dict[tuple[int, str, int], Bar] = {}
    for bar in bars:  # the same bar twice in a batch (a replay): the later one wins
        latest[(bar.instrument_id, bar.interval, bar.ts)] = bar
    now = datetime.now(UTC)
    rows = [
        PriceHistoryIntraday(
            instrument_id=b.instrument_id,
            timestamp=datetime.fromtimestamp(b.ts / 1000, UTC),
            interval=b.interval,
            open=b.open,
            high=b.high,
            low=b.low,
            close=b.close,
            volume=b.volume,
            trade_count=b.trades or None,
            source_id=provider_ids.get(b.provider),
            created_at=now,
            updated_at=now,
        )
        for b in latest.values()
    ]
    with transaction.atomic():
        PriceHistoryIntraday.objects.bulk_create(
            rows,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["instrument", "interval", "timestamp"],
            update_fields=UPDATE_FIELDS,
        )
    return len(rows)


def _provider_ids() -> dict[str, int]:
    from ingestion.models import Provider

    close_old_connections()
    return dict(Provider.objects.values_list("code", "id"))


def _save_bars(*, bars: list[Bar], provider_ids: dict[str, int]) -> int:
    """``bars_upsert`` from the saver's worker thread, leaving out bars no row can hold."""
    from instruments.models import Instrument

    # The worker thread keeps its connection between flushes: replace it when it broke (a
    # database restart) or grew old, as Django does between requests.
    close_old_connections()
    ids = {b.instrument_id for b in bars}
    known = set(Instrument.objects.filter(id__in=ids).values_list("id", flat=True))
    if gone := ids - known:
        # An instrument deleted while its bars waited: they can never be saved, and keeping
        # them pending would block every newer bar behind them.
        logger.warning("saver: bars of deleted instruments %s dropped", sorted(gone))
        bars = [b for b in bars if b.instrument_id in known]
    return bars_upsert(bars=bars, provider_ids=provider_ids)


class BarSaver:
    """Drains the persist stream into the database."""

    def __init__(
        self,
        *,
        store: TickStore,
        consumer: str | None = None,
        batch_size: int = 5000,
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.store = store
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self._provider_ids: dict[str, int] | None = None

    async def _write(self, entries: list[PersistEntry]) -> None:
        bars = [e.bar for e in entries]
        known = self._provider_ids
        if known is None or any(b.provider and b.provider not in known for b in bars):  # a provider added since
            self._provider_ids = await sync_to_async(_provider_ids, thread_sensitive=False)()
        await sync_to_async(_save_bars, thread_sensitive=False)(bars=bars, provider_ids=self._provider_ids)
        await self.store.persist_ack([e.entry_id for e in entries])

    async def flush(self) -> FlushResult:
        """Save everything waiting now (stale pending entries first); returns the counts."""
        result = FlushResult()
        while True:
            stale = await self.store.persist_claim_stale(self.consumer, self.claim_idle_ms, self.batch_size)
            if not stale:
                break
            await self._write(stale)
            result.claimed += len(stale)
            result.saved += len(stale)
        while True:
            entries = await self.store.persist_read(self.consumer, self.batch_size)
            if not entries:
                break
            await self._write(entries)
            result.saved += len(entries)
        return result

    async def run_forever(self, interval_s: float) -> None:
        """Flush every ``interval_s``; database or Redis trouble backs off and retries."""
        delay = interval_s
        while True:
            try:
                result = await self.flush()
                if result.saved:
                    logger.info("saver: %d bars saved (%d taken over)", result.saved, result.claimed)
                delay = interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = min(max(delay * 2, 1.0), 60.0)
                logger.warning("saver: flush failed (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
