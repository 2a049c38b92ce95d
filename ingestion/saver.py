"""The saver: closed bars from the tick store's persist stream into the database.

At-least-once and idempotent: read a batch through the consumer group, upsert it in one
transaction (unique (instrument, interval, timestamp), so a replayed batch never duplicates),
acknowledge only after the commit, and take over entries a dead consumer left pending.

On PostgreSQL a batch is COPied into a temporary table and merged with one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``; elsewhere (the embedded SQLite) Django's
``bulk_create`` upsert does the same job. Bars of instruments deleted while they waited are
left out by the statement itself and reported as dropped, so they never block the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import close_old_connections, connection, transaction

from core.db import db_sync_to_async
from marketdata.live.store import PersistEntry, TickStore, get_tick_store
from marketdata.live.types import MINUTE_MS, Bar
from marketdata.models import PriceHistoryIntraday

logger = logging.getLogger(__name__)

UPDATE_FIELDS = ["open", "high", "low", "close", "volume", "trade_count", "source_id", "updated_at"]
DEFAULT_BATCH_SIZE = 5000
DEFAULT_CLAIM_IDLE_MS = 60_000
DEFAULT_LAG_ALERT_S = 120.0
MAX_BACKOFF_S = 60.0


@dataclass
class FlushResult:
    """What one flush (or a saver's whole life) did."""

    saved: int = 0
    claimed: int = 0
    dropped: int = 0

    def add(self, other: FlushResult) -> None:
        self.saved += other.saved
        self.claimed += other.claimed
        self.dropped += other.dropped


# Every saver of this process together (a Celery worker runs a new one per task): for the metrics.
PROCESS_TOTALS = FlushResult()


@dataclass(frozen=True)
class UpsertResult:
    """Rows written, and bars left out because their instrument no longer exists."""

    written: int
    dropped: int


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def claim_idle_ms_setting() -> int:
    """How long an entry stays pending before another saver presumes its reader dead."""
    return int(getattr(settings, "PERSIST_CLAIM_IDLE_MS", DEFAULT_CLAIM_IDLE_MS))


# --- writing ----------------------------------------------------------------------------


def bars_upsert(*, bars: list[Bar], provider_ids: dict[str, int] | None = None) -> int:
    """Insert or update 1m bars in one transaction; returns the number of rows written.

    Bars whose instrument no longer exists are left out (logged as dropped).
    """
    return bars_upsert_counted(bars=bars, provider_ids=provider_ids).written


def bars_upsert_counted(*, bars: list[Bar], provider_ids: dict[str, int] | None = None) -> UpsertResult:
    """``bars_upsert`` that also reports how many bars had no instrument left to belong to."""
    latest: dict[tuple[int, str, int], Bar] = {}
    for bar in bars:  # the same bar twice in a batch (a replay): the later one wins
        latest[(bar.instrument_id, bar.interval, bar.ts)] = bar
    if not latest:
        return UpsertResult(0, 0)
    # Sorted by key: concurrent savers then lock rows in the same order and cannot deadlock.
    unique = [latest[key] for key in sorted(latest)]
    upsert = _copy_upsert if connection.vendor == "postgresql" else _orm_upsert
    written, gone = upsert(unique, provider_ids or {})
    if gone:
        # An instrument deleted while its bars waited: they can never be saved, and keeping
        # them pending would block every newer bar behind them.
        logger.warning("saver: %d bars of deleted instruments %s dropped", len(unique) - written, sorted(gone))
    return UpsertResult(written, len(unique) - written)


def _tables() -> dict[str, str]:
    from ingestion.models import Provider
    from instruments.models import Instrument

    quote = connection.ops.quote_name
    return {
        "bars": quote(PriceHistoryIntraday._meta.db_table),
        "instruments": quote(Instrument._meta.db_table),
        "providers": quote(Provider._meta.db_table),
    }


STAGE = "saver_stage"
STAGE_COLUMNS = (
    "instrument_id bigint, ts bigint, interval varchar(8), open float8, high float8, low float8, "
    "close float8, volume bigint, trade_count integer, source_id bigint"
)
STAGE_TYPES = ["int8", "int8", "varchar", "float8", "float8", "float8", "float8", "int8", "int4", "int8"]
MERGE_SQL = """
INSERT INTO {bars} AS b (instrument_id, "timestamp", interval, open, high, low, close, volume,
                         trade_count, source_id, created_at, updated_at, is_active)
SELECT s.instrument_id, timestamptz 'epoch' + s.ts * interval '1 millisecond', s.interval,
       s.open, s.high, s.low, s.close, s.volume, s.trade_count, p.id, %(now)s, %(now)s, true
FROM {stage} s
JOIN {instruments} i ON i.id = s.instrument_id
LEFT JOIN {providers} p ON p.id = s.source_id
ORDER BY s.instrument_id, s.interval, s.ts
ON CONFLICT (instrument_id, interval, "timestamp") DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count, source_id = EXCLUDED.source_id,
    updated_at = EXCLUDED.updated_at
"""
GONE_SQL = """
SELECT DISTINCT instrument_id FROM {stage} s
WHERE NOT EXISTS (SELECT 1 FROM {instruments} i WHERE i.id = s.instrument_id)
"""


def _copy_upsert(bars: list[Bar], provider_ids: dict[str, int]) -> tuple[int, set[int]]:
    """PostgreSQL: binary COPY into a temporary table, then one merge, in one transaction."""
    names = {**_tables(), "stage": STAGE}
    with transaction.atomic(), connection.cursor() as cursor:
        # ON COMMIT DROP cleans up after a failure too; the explicit DROP below matters only
        # inside an outer transaction (a test), where commit is not ours to wait for.
        cursor.execute(f"CREATE TEMP TABLE {STAGE} ({STAGE_COLUMNS}) ON COMMIT DROP")
        with cursor.cursor.copy(f"COPY {STAGE} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(STAGE_TYPES)
            for b in bars:
                copy.write_row(
                    (
                        b.instrument_id,
                        b.ts,
                        b.interval,
                        b.open,
                        b.high,
                        b.low,
                        b.close,
                        b.volume,
                        b.trades or None,
                        provider_ids.get(b.provider),
                    )
                )
        # A provider row deleted since ``provider_ids`` was read joins to NULL instead of failing.
        cursor.execute(MERGE_SQL.format(**names), {"now": datetime.now(UTC)})
        written = cursor.rowcount
        gone: set[int] = set()
        if written < len(bars):
            cursor.execute(GONE_SQL.format(**names))
            gone = {row[0] for row in cursor.fetchall()}
        cursor.execute(f"DROP TABLE {STAGE}")
    return written, gone


def _orm_upsert(bars: list[Bar], provider_ids: dict[str, int]) -> tuple[int, set[int]]:
    """Other databases (the embedded SQLite): ``bulk_create`` with ``update_conflicts``."""
    from instruments.models import Instrument

    now = datetime.now(UTC)
    with transaction.atomic():
        ids = {b.instrument_id for b in bars}
        gone = ids - set(Instrument.objects.filter(id__in=ids).values_list("id", flat=True))
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
            for b in bars
            if b.instrument_id not in gone
        ]
        PriceHistoryIntraday.objects.bulk_create(
            rows,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["instrument", "interval", "timestamp"],
            update_fields=UPDATE_FIELDS,
        )
    return len(rows), gone


def _provider_ids() -> dict[str, int]:
    from ingestion.models import Provider

    close_old_connections()
    return dict(Provider.objects.values_list("code", "id"))


def _save_bars(*, bars: list[Bar], provider_ids: dict[str, int]) -> UpsertResult:
    """``bars_upsert`` from the saver's worker thread."""
    # The worker thread keeps its connection between flushes: replace it when it broke (a
    # database restart) or grew old, as Django does between requests.
    close_old_connections()
    return bars_upsert_counted(bars=bars, provider_ids=provider_ids)


# --- the saver --------------------------------------------------------------------------


class BarSaver:
    """Drains the persist stream into the database.

    ``stop()`` ends ``run_forever`` (and an ongoing ``flush``) after the batch in hand is
    committed and acknowledged; a batch whose write failed is kept and written first next time.
    """

    def __init__(
        self,
        *,
        store: TickStore,
        consumer: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        claim_idle_ms: int | None = None,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.store = store
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms_setting() if claim_idle_ms is None else claim_idle_ms
        self.max_backoff_s = max_backoff_s
        self.totals = FlushResult()
        self._provider_ids: dict[str, int] | None = None
        self._unsaved: list[PersistEntry] = []  # read by us, write failed: retried before anything else
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``flush`` and ``run_forever``."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _write(self, entries: list[PersistEntry]) -> int:
        bars = [e.bar for e in entries]
        known = self._provider_ids
        try:
            if known is None or any(b.provider and b.provider not in known for b in bars):  # a provider added since
                self._provider_ids = await db_sync_to_async(_provider_ids)()
            upserted = await db_sync_to_async(_save_bars)(bars=bars, provider_ids=self._provider_ids)
            # Committed: only now may the entries leave the stream. A crash right here replays
            # them later, which the upsert makes harmless.
            await self.store.persist_ack([e.entry_id for e in entries])
        except BaseException:
            # Still ours in the stream: write (again) and acknowledge them before anything else.
            self._unsaved = entries
            raise
        self._unsaved = []
        return upserted.dropped

    async def flush(self) -> FlushResult:
        """Save everything waiting now (a failed batch, then stale pending entries, then new ones)."""
        result = FlushResult()
        try:
            if self._unsaved:
                retry = self._unsaved
                result.dropped += await self._write(retry)
                result.saved += len(retry)
            while not self.stopping:
                # One at a time: entries being written are still pending, so a claim made
                # meanwhile would take them again.
                stale = await self.store.persist_claim_stale(self.consumer, self.claim_idle_ms, self.batch_size)
                if not stale:
                    break
                result.dropped += await self._write(stale)
                result.claimed += len(stale)
                result.saved += len(stale)
            await self._read_and_write(result)
        finally:
            self.totals.add(result)
            PROCESS_TOTALS.add(result)
        return result

    async def _read_and_write(self, result: FlushResult) -> None:
        """Write the new entries until there are none (or ``stop()``).

        The next batch is read and decoded while the previous one is in the database (one
        write in flight, in order). A batch read while a write failed is kept for the retry
        with it; a write in flight always finishes (committed and acknowledged) before this returns.
        """
        writing: asyncio.Task | None = None
        in_flight: list[PersistEntry] = []

        async def finish() -> None:
            nonlocal writing
            task, writing = writing, None
            result.dropped += await asyncio.shield(task)
            result.saved += len(in_flight)

        try:
            while not self.stopping:
                entries = await self.store.persist_read(self.consumer, self.batch_size)
                if writing is not None:
                    try:
                        await finish()
                    except BaseException:
                        self._unsaved = [*self._unsaved, *entries]  # ours in the stream: retried with it
                        raise
                if not entries:
                    break
                in_flight = entries
                writing = asyncio.create_task(self._write(entries))
        finally:
            if writing is not None:
                await finish()

    async def run_forever(self, interval_s: float) -> None:
        """Flush every ``interval_s`` until ``stop()``; database or Redis trouble backs off and retries."""
        delay = interval_s
        while not self.stopping:
            began = time.monotonic()
            try:
                result = await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = min(max(delay * 2, 1.0), self.max_backoff_s)
                logger.warning(
                    "saver: flush failed (%s: %s); %d bars kept for retry; retrying in %.1fs",
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                    len(self._unsaved),
                    delay,
                )
            else:
                if result.saved:
                    logger.info(
                        "saver: %d bars saved (%d taken over, %d dropped) in %.2fs",
                        result.saved,
                        result.claimed,
                        result.dropped,
                        time.monotonic() - began,
                    )
                delay = interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()


# --- lag (for /health/ and the admin) ---------------------------------------------------


def persist_lag_status(*, timeout_s: float = 1.0) -> dict[str, Any]:
    """``{"pending", "oldest_age_s", "ok"}``: bars not yet committed and how long the oldest waited.

    Stack mode: read from Redis directly (short timeouts; the age comes from the stream entry
    id, which Redis stamps when the engine hands the bar over, against Redis's own clock, so a
    replay of old data is not mistaken for lag). Embedded mode: the in-process store, whose
    oldest bar is aged from the end of its minute (when the engine closes it). ``ok`` is
    false once the oldest waited longer than ``PERSIST_LAG_ALERT_S``. Raises when the store
    cannot be read.
    """
    alert_s = float(getattr(settings, "PERSIST_LAG_ALERT_S", DEFAULT_LAG_ALERT_S))
    if settings.REDIS_URL:
        pending, age_ms = _redis_lag(settings.REDIS_URL, timeout_s)
    else:
        lag = async_to_sync(get_tick_store().persist_lag)()
        pending, oldest = lag["pending"], lag["oldest_ms"]
        age_ms = None if oldest is None else max(0, int(time.time() * 1000) - (oldest + MINUTE_MS))
    age_s = None if age_ms is None else round(age_ms / 1000, 3)
    return {"pending": pending, "oldest_age_s": age_s, "ok": age_s is None or age_s <= alert_s}


def _redis_lag(url: str, timeout_s: float) -> tuple[int, int | None]:
    import redis

    from marketdata.live.store.redis import PERSIST

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.xlen(PERSIST)
        pipe.xrange(PERSIST, count=1)
        pipe.time()
        length, first, (seconds, micros) = pipe.execute()
    finally:
        client.close()
    if not first:
        return int(length), None
    entry_id = first[0][0].decode() if isinstance(first[0][0], bytes) else first[0][0]
    added_ms = int(entry_id.split("-", 1)[0])
    return int(length), max(0, seconds * 1000 + micros // 1000 - added_ms)
