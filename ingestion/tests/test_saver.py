"""The saver: closed bars from the persist stream into PostgreSQL, at least once and idempotent.

Runs against both tick stores (Redis and memory). The saver writes from worker threads, so
the tests use transactional test databases: the instruments must be committed to be seen.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from ingestion.bars import MINUTE_MS, Bar
from ingestion.engine import Engine, InstrumentMeta
from ingestion.models import Provider
from ingestion.saver import BarSaver, bars_upsert
from ingestion.tests.factories import ProviderFactory
from ingestion.ticks import Tick
from ingestion.tickstore import StoreBatch
from instruments.models import Instrument
from instruments.tests.factories import InstrumentFactory
from marketdata.models import PriceHistoryIntraday

T0 = 1_705_312_800_000  # 2024-01-15T10:00:00Z
db = sync_to_async
pytestmark = pytest.mark.django_db(transaction=True)


def _instruments() -> tuple[int, int, int]:
    provider = ProviderFactory(code="SIM", kind=Provider.Kind.SIMULATED)
    return InstrumentFactory(symbol="AAA").id, InstrumentFactory(symbol="BBB").id, provider.id


@pytest.fixture
async def setup(tick_store):
    """Two instruments, the SIM provider, and six closed bars waiting in the persist stream."""
    first, second, provider_id = await db(_instruments)()
    engine = Engine(store=tick_store)
    engine.set_instruments([InstrumentMeta(first, "AAA", "X"), InstrumentMeta(second, "BBB", "X")])
    await engine.restore()
    ticks = []
    for minute in range(3):
        for i, iid in enumerate((first, second)):
            base = 100.0 * (i + 1) + minute
            start = T0 + minute * MINUTE_MS
            ticks += [
                Tick(iid, "SIM", start + 1_000, base, day_volume=1_000 + minute * 100),
                Tick(iid, "SIM", start + 20_000, base + 0.5, day_volume=1_030 + minute * 100),
                Tick(iid, "SIM", start + 40_000, base - 0.25, day_volume=1_070 + minute * 100),
            ]
    await engine.process(sorted(ticks, key=lambda t: t.ts))
    await engine.close_bars(now_ms=T0 + 4 * MINUTE_MS)
    bars = [b for iid in (first, second) for b in await tick_store.recent_bars(iid, T0, T0 + 4 * MINUTE_MS)]
    assert len(bars) == 6 and (await tick_store.persist_lag())["pending"] == 6
    return {"store": tick_store, "ids": (first, second), "provider_id": provider_id, "bars": bars}


def rows() -> list[tuple]:
    return [
        (r.instrument_id, int(r.timestamp.timestamp() * 1000), r.open, r.high, r.low, r.close, r.volume, r.source_id)
        for r in PriceHistoryIntraday.objects.order_by("instrument_id", "timestamp")
    ]


def as_rows(bars: list[Bar], provider_id: int) -> list[tuple]:
    return [(b.instrument_id, b.ts, b.open, b.high, b.low, b.close, b.volume, provider_id) for b in bars]


def _reject_writes(on: bool) -> None:
    """A real database refusing the write (a full disk, a read-only replica...)."""
    table = PriceHistoryIntraday._meta.db_table
    with connection.cursor() as cursor:
        if on:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION hmgr_reject_bars() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER hmgr_reject BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION hmgr_reject_bars()"
            )
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS hmgr_reject ON {table}")


@pytest.fixture
async def rejecting_database():
    await db(_reject_writes)(True)
    yield lambda: db(_reject_writes)(False)
    await db(_reject_writes)(False)


@pytest.fixture
def restart_database():
    """Terminate the other connections to the test database, as a database restart does.

    The worker threads' connections die with it. The main thread's connection is closed at
    teardown, so that the test database can still be emptied after the test.
    """

    def restart() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    yield db(restart)
    connection.close()


def one_worker_thread() -> None:
    """Run every ``sync_to_async(thread_sensitive=False)`` call in one thread, so the thread
    whose connection is killed is certainly the one used next."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))


async def test_closed_bars_are_saved_once_and_acknowledged(setup):
    store = setup["store"]
    saver = BarSaver(store=store, consumer="saver-1")
    result = await saver.flush()
    assert (result.saved, result.claimed) == (6, 0)
    assert await db(rows)() == as_rows(setup["bars"], setup["provider_id"])
    assert await store.persist_lag() == {"pending": 0, "oldest_ms": None}
    # Nothing left: a second flush saves nothing and changes nothing.
    assert (await saver.flush()).saved == 0
    assert await db(rows)() == as_rows(setup["bars"], setup["provider_id"])


async def test_the_same_bars_again_update_the_rows_instead_of_duplicating_them(setup):
    store = setup["store"]
    saver = BarSaver(store=store, consumer="saver-1")
    await saver.flush()
    # The same bars arrive again (a replay after a crash between commit and ack), one corrected.
    again = [Bar(**b.as_dict()) for b in setup["bars"]]
    again[0].close, again[0].volume = 123.0, 999
    await store.write(StoreBatch(closed_bars=[*again, again[0]]))
    assert (await saver.flush()).saved == 7
    expected = as_rows(setup["bars"], setup["provider_id"])
    expected[0] = (*expected[0][:5], 123.0, 999, setup["provider_id"])
    assert await db(rows)() == expected


async def test_bars_upsert_keeps_one_row_per_instrument_interval_and_minute(setup):
    bar = setup["bars"][0]
    later = Bar(**{**bar.as_dict(), "close": 1.5})
    assert await db(bars_upsert)(bars=[bar, later]) == 1
    assert await db(bars_upsert)(bars=[bar]) == 1
    stored = await db(lambda: list(PriceHistoryIntraday.objects.values_list("close", "source_id")))()
    assert stored == [(bar.close, None)]


async def test_entries_a_dead_consumer_left_pending_are_taken_over(setup):
    store = setup["store"]
    taken = await store.persist_read("dead-consumer", 100)
    assert len(taken) == 6  # read, never acknowledged: that process died before committing
    patient = BarSaver(store=store, consumer="saver-2", claim_idle_ms=60_000)
    assert (await patient.flush()).saved == 0  # not idle long enough to be presumed dead
    assert (await store.persist_lag())["pending"] == 6
    result = await BarSaver(store=store, consumer="saver-2", claim_idle_ms=0).flush()
    assert (result.saved, result.claimed) == (6, 6)
    assert await db(rows)() == as_rows(setup["bars"], setup["provider_id"])
    assert (await store.persist_lag())["pending"] == 0


async def test_nothing_is_acknowledged_when_the_database_write_fails(setup, rejecting_database):
    store = setup["store"]
    saver = BarSaver(store=store, consumer="saver-1", claim_idle_ms=0)
    with pytest.raises(Exception, match="No space left on device"):
        await saver.flush()
    assert await db(rows)() == []
    assert (await store.persist_lag())["pending"] == 6
    if hasattr(store, "redis"):
        pending = await store.redis.xpending("md:persist", "savers")
        assert pending["pending"] == 6 and pending["consumers"] == [{"name": b"saver-1", "pending": 6}]
    await rejecting_database()  # the disk was cleaned up
    result = await saver.flush()
    assert (result.saved, result.claimed) == (6, 6)
    assert await db(rows)() == as_rows(setup["bars"], setup["provider_id"])
    assert (await store.persist_lag())["pending"] == 0


async def test_the_saver_loop_backs_off_while_the_database_fails_and_then_catches_up(setup, rejecting_database):
    saver = BarSaver(store=setup["store"], consumer="saver-1", claim_idle_ms=0)
    task = asyncio.create_task(saver.run_forever(0.05))
    try:
        await asyncio.sleep(0.3)
        assert not task.done() and await db(rows)() == []
        await rejecting_database()
        async with asyncio.timeout(5):
            while len(await db(rows)()) < 6:  # noqa: ASYNC110 - the database has no event to wait on
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert (await setup["store"].persist_lag())["pending"] == 0


async def test_bars_of_a_deleted_instrument_do_not_block_the_others(setup):
    store = setup["store"]
    first, second = setup["ids"]
    await db(Instrument.objects.filter(id=second).delete)()
    saver = BarSaver(store=store, consumer="saver-1", claim_idle_ms=0)
    await saver.flush()
    assert await db(rows)() == as_rows([b for b in setup["bars"] if b.instrument_id == first], setup["provider_id"])
    # Nothing stays pending forever in front of newer bars.
    assert (await store.persist_lag())["pending"] == 0


async def test_a_provider_created_after_the_saver_started_is_credited(setup):
    store = setup["store"]
    saver = BarSaver(store=store, consumer="saver-1")
    await saver.flush()
    new = await db(ProviderFactory)(code="NEW")
    bar = Bar(setup["ids"][0], T0 + 10 * MINUTE_MS, 1.0, 1.0, 1.0, 1.0, 5, 1, "1m", "NEW")
    await store.write(StoreBatch(closed_bars=[bar]))
    await saver.flush()
    stored = await db(PriceHistoryIntraday.objects.get)(timestamp=datetime.fromtimestamp(bar.ts / 1000, UTC))
    assert stored.source_id == new.id


async def test_the_saver_recovers_after_the_database_connection_is_lost(setup, restart_database):
    one_worker_thread()
    store = setup["store"]
    saver = BarSaver(store=store, consumer="saver-1", claim_idle_ms=0)
    await saver.flush()
    assert await restart_database() >= 1
    bar = Bar(setup["ids"][0], T0 + 10 * MINUTE_MS, 1.0, 1.0, 1.0, 1.0, 5, 1, "1m", "SIM")
    await store.write(StoreBatch(closed_bars=[bar]))
    assert (await saver.flush()).saved == 1
    assert len(await db(rows)()) == 7
