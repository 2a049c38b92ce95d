"""Benchmark ``persist``: closed bars from the persist stream into PostgreSQL through the saver.

Ours: ``N`` closed 1-minute bars (500 instruments) are put into the tick store's persist stream
(``md:persist``, the entries the engine writes), then ``BarSaver.flush()`` drains it into the
empty ``marketdata_pricehistoryintraday`` table: read through the consumer group, decode,
upsert in PostgreSQL, acknowledge. Timed: the flush, from its start until the stream is empty.

Baseline, same run: ``psql -c "\\copy ..."`` of the same rows (a CSV file with every column the
saver writes) into an identical empty table (``LIKE ... INCLUDING ALL`` plus the same foreign
keys, so the same indexes and checks). Timed: the psql process. Both clients run on core 0;
PostgreSQL and Redis are unpinned.

``python -m bench.persist [--quick]``: 1,000,000 bars (quick: 100,000).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import common, environment, procs, report, stats

GOAL = 0.5
INSTRUMENTS = 500
START_MS = 1704067200000  # 2024-01-01 00:00 UTC
COPY_TABLE = "bench_copy_target"
COLUMNS = (
    "instrument_id",
    "timestamp",
    "interval",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trade_count",
    "source_id",
    "created_at",
    "updated_at",
    "is_active",
)


def make_bars(n: int, instrument_ids: list[int], provider: str) -> list:
    """``n`` bars, consecutive minutes per instrument, instruments interleaved as the engine closes them."""
    from marketdata.live.types import Bar

    per = n // len(instrument_ids)
    bars = []
    for minute in range(per):
        ts = START_MS + minute * 60_000
        for k, iid in enumerate(instrument_ids):
            price = 100.0 + k + (minute % 97) * 0.05
            bars.append(Bar(iid, ts, price, price + 0.5, price - 0.5, price + 0.25, 1000 + minute, 10, "1m", provider))
    return bars


def fill_stream(bars: list) -> None:
    """The bars into ``md:persist`` as the tick store writes them (field ``bar``, JSON)."""
    import redis

    from marketdata.live.store.redis import PERSIST

    client = redis.Redis.from_url(environment.bench_redis_url())
    client.delete(PERSIST)
    for start in range(0, len(bars), 10_000):
        pipe = client.pipeline(transaction=False)
        for bar in bars[start : start + 10_000]:
            pipe.xadd(PERSIST, {"bar": orjson.dumps(bar.as_dict())})
        pipe.execute()
    assert client.xlen(PERSIST) == len(bars)
    client.close()


def write_csv(bars: list, provider_ids: dict[str, int], path: Path) -> None:
    """The rows the saver writes, as CSV for psql's \\copy."""
    now = datetime.now(UTC).isoformat()
    lines = []
    for b in bars:
        ts = datetime.fromtimestamp(b.ts / 1000, UTC).isoformat()
        source = provider_ids.get(b.provider, "")
        lines.append(
            f"{b.instrument_id},{ts},{b.interval},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume},"
            f"{b.trades or ''},{source},{now},{now},t\n"
        )
    path.write_text("".join(lines))


def reset_tables() -> None:
    """Empty the saver's table and (re)create the baseline's identical empty table."""
    from django.db import connection

    from marketdata.models import PriceHistoryIntraday

    table = PriceHistoryIntraday._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {table}")
        cursor.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        cursor.execute(f"CREATE TABLE {COPY_TABLE} (LIKE {table} INCLUDING ALL)")
        cursor.execute(
            # The same constraints as the saver's table: the instrument foreign key (source_id is
            # a plain provider id there, no constraint).
            f"ALTER TABLE {COPY_TABLE} ADD FOREIGN KEY (instrument_id) REFERENCES instruments_instrument(id) "
            "DEFERRABLE INITIALLY DEFERRED"
        )
        cursor.execute(f"VACUUM ANALYZE {table}")


def count_rows(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - our own table names
        return cursor.fetchone()[0]


async def saver_flush() -> tuple[float, int]:
    """``BarSaver.flush()`` over the whole stream: (seconds, bars saved)."""
    from ingestion.saver import BarSaver
    from marketdata.live.store.redis import RedisTickStore

    store = RedisTickStore(environment.bench_redis_url())
    saver = BarSaver(store=store, consumer="bench")
    t0 = time.perf_counter()
    result = await saver.flush()
    elapsed = time.perf_counter() - t0
    lag = await store.persist_lag()
    await store.close()
    assert lag["pending"] == 0, lag
    return elapsed, result.saved


def psql_copy(path: Path) -> float:
    """psql's \\copy of the CSV into the baseline table: seconds (the whole psql process)."""
    cmd = [
        *procs.taskset_prefix(common.SERVER_CORE),
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        environment.psql_conninfo(),
        "-c",
        f"\\copy {COPY_TABLE} ({', '.join(COLUMNS)}) FROM '{path}' WITH (FORMAT csv)",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def run(*, quick: bool) -> dict:
    environment.setup_django()
    procs.pin(common.SERVER_CORE)
    from ingestion.models import Provider
    from marketdata.models import PriceHistoryIntraday

    n = 100_000 if quick else 1_000_000
    instruments = environment.bench_instruments(INSTRUMENTS)
    provider_ids = dict(Provider.objects.values_list("code", "id"))
    provider = "REPLAY" if "REPLAY" in provider_ids else next(iter(provider_ids))
    bars = make_bars(n, [i.id for i in instruments], provider)
    csv_path = common.DATA_DIR / f"bars-{n}.csv"
    common.DATA_DIR.mkdir(parents=True, exist_ok=True)
    write_csv(bars, provider_ids, csv_path)

    reset_tables()
    fill_stream(bars)
    del bars
    ours_s, saved = asyncio.run(saver_flush())
    ours_rows = count_rows(PriceHistoryIntraday._meta.db_table)
    copy_s = psql_copy(csv_path)
    copy_rows = count_rows(COPY_TABLE)
    assert saved == n and ours_rows == n and copy_rows == n, (saved, ours_rows, copy_rows)

    ours_rate = n / ours_s
    copy_rate = n / copy_s
    ratio = stats.ratio(ours_rate, copy_rate)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
    report.write_result(
        "persist",
        figures={
            "bars": n,
            "instruments": INSTRUMENTS,
            "saver_rows_per_s": round(ours_rate),
            "saver_s": round(ours_s, 2),
        },
        baseline={"psql_copy_rows_per_s": round(copy_rate), "psql_copy_s": round(copy_s, 2)},
        ratio=ratio,
        goal=f"ratio >= {GOAL}",
        quick=quick,
        notes=[
            "ours: BarSaver.flush() draining md:persist (read via consumer group, decode, upsert, XACK+XDEL) "
            "into the empty intraday table",
            "baseline: psql \\copy of the same rows (CSV) into an identical empty table (same indexes and FKs)",
            f"both clients on core {common.SERVER_CORE}; PostgreSQL and Redis unpinned",
        ],
    )
    return {"ratio": ratio, "saver_rows_per_s": round(ours_rate), "psql_copy_rows_per_s": round(copy_rate)}


def main() -> None:
    args = common.arg_parser(__doc__.splitlines()[0]).parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
