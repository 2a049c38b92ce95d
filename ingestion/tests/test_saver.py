"""The saver: closed bars from the persist stream into PostgreSQL, at least once and idempotent.

Runs against both tick stores (Redis and memory). The saver writes from worker threads, so
the tests use transactional test databases: the instruments must be committed to be seen.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from datetime import UTC, datetime

import orjson
import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings

from ingestion.engine import Engine, InstrumentMeta
from ingestion.models import Provider
from ingestion.saver import (
    BarSaver,
    UpsertResult,
    _copy_upsert,
    _orm_upsert,
    bars_upsert,
    bars_upsert_counted,
    persist_lag_status,
)
from ingestion.tests.conftest import one_worker_thread
from ingestion.tests.factories import ProviderFactory
from ingestion.ticks import Tick
from instruments.models import Instrument
from instruments.tests.factories import InstrumentFactory
from marketdata.live import store as tickstore
from marketdata.live.store import StoreBatch
from marketdata.live.store.memory import MemoryTickStore
from marketdata.live.store.redis import RedisTickStore
from marketdata.live.types import MINUTE_MS, Bar
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
    # A minute of claim idleness: the failed batch must come back from the saver itself, at once.
    saver = BarSaver(store=store, consumer="saver-1", claim_idle_ms=60_000)
    with pytest.raises(Exception, match="No space left on device"):
        await saver.flush()
    assert await db(rows)() == []
    assert (await store.persist_lag())["pending"] == 6
    if hasattr(store, "redis"):
        pending = await store.redis.xpending("md:persist", "savers")
        assert pending["pending"] == 6 and pending["consumers"] == [{"name": b"saver-1", "pending": 6}]
    await rejecting_database()  # the disk was cleaned up
    result = await saver.flush()
    assert (result.saved, result.claimed, result.dropped) == (6, 0, 0)
    assert await db(rows)() == as_rows(setup["bars"], setup["provider_id"])
    assert (await store.persist_lag())["pending"] == 0


async def test_a_batch_read_while_the_previous_write_failed_is_kept_with_it(setup, rejecting_database):
    """Small batches: the saver reads the next batch while the database fails the previous one."""
    store = setup["store"]
    saver = BarSaver(store=store, consumer="saver-1", batch_size=2, claim_idle_ms=60_000)
    with pytest.raises(Exception, match="No space left on device"):
        await saver.flush()
    # The failed batch and the one read meanwhile, in stream order, are kept for the retry.
    kept = [e.entry_id for e in saver._unsaved]
    assert len(set(kept)) == 4 and kept == sorted(kept, key=lambda i: tuple(map(int, i.split("-"))))
    assert (await store.persist_lag())["pending"] == 6
    await rejecting_database()
    result = await saver.flush()
    assert (result.saved, result.claimed, result.dropped) == (6, 0, 0)
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
    result = await saver.flush()
    assert (result.saved, result.dropped) == (6, 3)
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


# --- the two write paths ------------------------------------------------------------------


def _all_columns() -> list[tuple]:
    fields = ("instrument_id", "timestamp", "interval", "open", "high", "low", "close", "volume", "trade_count")
    return list(PriceHistoryIntraday.objects.order_by("instrument_id", "timestamp").values_list(*fields, "source_id"))


def test_the_copy_path_and_the_orm_path_write_the_same_rows():
    """PostgreSQL's COPY + merge and the embedded mode's bulk_create, on the same batch."""
    first, second, provider_id = _instruments()
    missing = Instrument.objects.order_by("-id").first().id + 1000
    bars = [
        Bar(first, T0, 10.0, 11.5, 9.75, 11.0, 300, 4, "1m", "SIM"),
        Bar(first, T0 + MINUTE_MS, 11.0, 11.0, 10.5, 10.5, 0, 0, "1m", ""),  # no trades, no provider
        Bar(second, T0, 0.1 + 0.2, 1e-9, 123456.789, 1e12, 9_000_000_000, 1, "1m", "GONE"),
        Bar(missing, T0, 1.0, 1.0, 1.0, 1.0, 1, 1, "1m", "SIM"),  # its instrument was deleted
    ]
    ids = {"SIM": provider_id}
    assert _copy_upsert(bars, ids) == (3, {missing})
    by_copy = _all_columns()
    PriceHistoryIntraday.objects.all().delete()
    assert _orm_upsert(bars, ids) == (3, {missing})
    assert _all_columns() == by_copy
    assert by_copy[0][3:] == (10.0, 11.5, 9.75, 11.0, 300, 4, provider_id)
    assert by_copy[1][-2:] == (None, None)
    assert by_copy[2][3:8] == (0.1 + 0.2, 1e-9, 123456.789, 1e12, 9_000_000_000)  # float8 and bigint intact


def test_a_provider_deleted_after_its_id_was_read_leaves_the_source_empty():
    first, _second, provider_id = _instruments()
    Provider.objects.filter(id=provider_id).delete()
    bar = Bar(first, T0, 1.0, 1.0, 1.0, 1.0, 1, 1, "1m", "SIM")
    assert bars_upsert(bars=[bar], provider_ids={"SIM": provider_id}) == 1
    assert list(PriceHistoryIntraday.objects.values_list("source_id", flat=True)) == [None]


def test_upserts_inside_an_outer_transaction_reuse_nothing_from_each_other():
    first, _second, _provider_id = _instruments()
    with transaction.atomic():
        assert bars_upsert(bars=[Bar(first, T0, 1.0, 1.0, 1.0, 1.0)]) == 1
        assert bars_upsert(bars=[Bar(first, T0 + MINUTE_MS, 2.0, 2.0, 2.0, 2.0)]) == 1
    assert PriceHistoryIntraday.objects.count() == 2


def test_the_dropped_count_comes_back_from_bars_upsert_counted():
    first, _second, _provider_id = _instruments()
    bars = [Bar(first, T0, 1.0, 1.0, 1.0, 1.0), Bar(first + 10_000, T0, 1.0, 1.0, 1.0, 1.0)]
    assert bars_upsert_counted(bars=bars) == UpsertResult(written=1, dropped=1)
    assert bars_upsert_counted(bars=[]) == UpsertResult(written=0, dropped=0)


# --- stopping ---------------------------------------------------------------------------


async def test_stop_ends_the_loop_after_the_batch_in_hand_is_committed_and_acknowledged(setup):
    store = setup["store"]
    saver = BarSaver(store=store, consumer="saver-1", batch_size=2)
    acknowledge = store.persist_ack

    async def ack_then_stop(entry_ids):  # SIGTERM arriving while the first batch is being saved
        saver.stop()
        await acknowledge(entry_ids)

    store.persist_ack = ack_then_stop
    async with asyncio.timeout(5):
        await saver.run_forever(60)  # returns without waiting out the interval
    # The batch in hand is the one being written and the one read meanwhile (the saver reads
    # the next batch while the database writes the previous one): both are saved, no more.
    assert (saver.totals.saved, saver.totals.claimed) == (4, 0)
    assert len(await db(rows)()) == 4
    assert (await store.persist_lag())["pending"] == 2
    if hasattr(store, "redis"):  # nothing left read-but-unacknowledged under the stopped consumer
        assert (await store.redis.xpending("md:persist", "savers"))["pending"] == 0


# --- lag --------------------------------------------------------------------------------


async def _queue_in_redis(batch: StoreBatch) -> None:
    store = RedisTickStore(settings.REDIS_URL)  # one per event loop: async_to_sync makes a new loop
    try:
        await store.write(batch)
    finally:
        await store.close()


@pytest.mark.parametrize("mode", ["redis", "memory"])
def test_lag_counts_pending_bars_and_ages_the_oldest(mode, monkeypatch):
    memory = MemoryTickStore()
    monkeypatch.setattr(tickstore, "_memory_store", memory)
    queue = memory.write if mode == "memory" else _queue_in_redis
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("md:persist")
    try:
        with override_settings(REDIS_URL=settings.REDIS_URL if mode == "redis" else "", PERSIST_LAG_ALERT_S=120):
            assert persist_lag_status() == {"pending": 0, "oldest_age_s": None, "ok": True}
            now_ms = int(time.time() * 1000)
            minute = now_ms - now_ms % MINUTE_MS
            async_to_sync(queue)(StoreBatch(closed_bars=[Bar(7, minute - MINUTE_MS, 1, 1, 1, 1)]))
            lag = persist_lag_status()
            # Redis: waiting since the engine queued it (just now); memory: since its minute ended.
            waited_s = 0 if mode == "redis" else (now_ms - minute) / 1000
            assert lag["pending"] == 1 and lag["ok"] is True
            assert abs(lag["oldest_age_s"] - waited_s) < 2
            with override_settings(PERSIST_LAG_ALERT_S=waited_s - 1):
                assert persist_lag_status()["ok"] is False
    finally:
        client.delete("md:persist")
        client.close()


# --- the command, in process (the real process is in test_persist_faults) -------------


async def test_persist_bars_once_saves_everything_waiting_and_prints_the_counts(setup):
    store = setup["store"]
    if not hasattr(store, "redis"):
        return  # the command refuses the embedded mode (below)
    await store.persist_read("dead-saver", 2)  # two bars left pending by a dead saver
    out = io.StringIO()
    await db(call_command)("persist_bars", "--once", "--batch-size", "4", "--claim-idle-ms", "0", stdout=out)
    assert out.getvalue().strip() == "6 bars saved (2 taken over, 0 dropped); 0 still pending."
    assert await db(rows)() == as_rows(setup["bars"], setup["provider_id"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0"], "--interval must be positive."),
        (["--batch-size", "0"], "--batch-size must be at least 1."),
        (["--claim-idle-ms", "-1"], "--claim-idle-ms cannot be negative."),
    ],
)
def test_persist_bars_refuses_bad_arguments(args, message):
    with pytest.raises(CommandError, match=f"^{message}$"):
        call_command("persist_bars", *args)


def test_persist_bars_refuses_the_embedded_mode():
    with override_settings(REDIS_URL=""), pytest.raises(CommandError, match="needs REDIS_URL"):
        call_command("persist_bars", "--once")


# --- the admin --------------------------------------------------------------------------


def test_the_provider_changelist_shows_the_persistence_lag(client, superuser):
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    redis_client.delete("md:persist")
    try:
        client.force_login(superuser)
        page = client.get("/admin/ingestion/provider/").content.decode()
        assert "Persistence: 0 bar(s) not yet saved, none waiting." in page
        seconds, _micros = redis_client.time()
        bar = Bar(1, T0, 1, 1, 1, 1)
        redis_client.xadd("md:persist", {"bar": orjson.dumps(bar.as_dict())}, id=f"{(seconds - 200) * 1000}-1")
        page = client.get("/admin/ingestion/provider/").content.decode()
        assert re.search(r"Persistence: 1 bar\(s\) not yet saved, oldest waiting 20[01] s\.", page)
        assert 'class="warning"' in page
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            response = client.get("/admin/ingestion/provider/")
        assert response.status_code == 200
        assert "Persistence lag unknown: the tick store is unreachable (ConnectionError)." in response.content.decode()
    finally:
        redis_client.delete("md:persist")
        redis_client.close()
