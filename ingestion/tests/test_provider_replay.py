"""The CSV replayer (REPLAY): formats, malformed rows, pacing, looping, and bars equal to pandas."""

from __future__ import annotations

import asyncio
import math
import random
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from ingestion.engine import Engine, InstrumentMeta
from ingestion.providers.base import FeedStatus, Subscription
from ingestion.providers.replay import ReplayFeedClient, parse_timestamp_ms
from ingestion.ticks import Tick
from marketdata.live.types import MINUTE_MS

T0 = 1_705_312_800_000  # 2024-01-15T10:00:00Z
AAPL = Subscription(instrument_id=1, symbol="AAPL", exchange="NASDAQ")
MSFT = Subscription(instrument_id=2, symbol="MSFT", exchange="NASDAQ")
RELIANCE = Subscription(instrument_id=3, symbol="RELIANCE", exchange="NSE")
KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")


def write_csv(path, lines: list[str], encoding: str = "utf-8"):
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def play(client: ReplayFeedClient, *subs: Subscription, within: float = 5.0) -> list[Tick]:
    """Subscribe, play the file to its end and return every tick it emitted."""
    await client.subscribe(subs)
    await client.connect()
    async with asyncio.timeout(within):
        await client.finished.wait()
    return client.get_nowait_batch(1_000_000)


async def until(predicate, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the client exposes no event for this
            await asyncio.sleep(0.005)


@pytest.fixture
async def clients():
    made: list[ReplayFeedClient] = []

    def make(**settings) -> ReplayFeedClient:
        client = ReplayFeedClient(code="REPLAY", settings={"speed": 0, **settings})
        made.append(client)
        return client

    yield make
    async with asyncio.timeout(5):
        for client in made:
            await client.disconnect()


def test_timestamps_parse_from_iso_with_offsets_and_from_epoch_ms():
    assert parse_timestamp_ms("2024-01-15T10:00:00Z") == T0
    assert parse_timestamp_ms("2024-01-15T15:30:00.250+05:30") == T0 + 250
    assert parse_timestamp_ms("2024-01-15T05:00:00-05:00") == T0
    assert parse_timestamp_ms("2024-01-15T10:00:00") == T0  # naive means UTC
    assert parse_timestamp_ms(" 1705312800123 ") == T0 + 123
    with pytest.raises(ValueError):
        parse_timestamp_ms("yesterday")


async def test_every_supported_row_form_is_played_and_malformed_rows_are_counted(tmp_path, clients):
    path = write_csv(
        tmp_path / "ticks.csv",
        [
            "timestamp,symbol,price,size,day_volume,bid,ask",
            "2024-01-15T10:00:00Z,NASDAQ:AAPL,185.5,100,1000,185.49,185.51",
            "2024-01-15T15:30:01+05:30,NSE:RELIANCE,1420.05,5,5000,,",
            "1705312802000,AAPL,185.6,,1100,,",
            "2024-01-15T10:00:03.250Z,reliance,1420.10,7,,,",
            "2024-01-15T10:00:04Z,AAPL,abc,1,,,",  # bad price
            "yesterday,AAPL,185.7,1,,,",  # bad timestamp
            "2024-01-15T10:00:05Z,AAPL,,1,,,",  # no price
            "2024-01-15T10:00:06Z,MSFT,400.0,1,,,",  # not subscribed: skipped, not malformed
            "2024-01-15T10:00:07Z,AAPL,nan,1,,,",  # not a price
            "2024-01-15T10:00:08Z,AAPL,-1,1,,,",  # not a price either
            "",
            "2024-01-15T10:00:09,NASDAQ:AAPL,185.8,2,1200,185.79,185.81",
            "2024-01-15T10:00:10Z,AAPL,185.9,x,,,",  # bad size
            "2024-01-15T10:00:11Z,AAPL",  # short row
        ],
    )
    client = clients(path=str(path))
    ticks = await play(client, AAPL, RELIANCE)
    assert ticks == [
        Tick(1, "REPLAY", T0, 185.5, 100, 1000, bid=185.49, ask=185.51),
        Tick(3, "REPLAY", T0 + 1000, 1420.05, 5, 5000),
        Tick(1, "REPLAY", T0 + 2000, 185.6, None, 1100),
        Tick(3, "REPLAY", T0 + 3250, 1420.10, 7, None),
        Tick(1, "REPLAY", T0 + 9000, 185.8, 2, 1200, bid=185.79, ask=185.81),
    ]
    assert client.stats.malformed == 7
    assert client.stats.ticks == 5
    assert client.status == FeedStatus.STOPPED and client.last_error == ""


async def test_the_optional_columns_may_be_left_out(tmp_path, clients):
    path = write_csv(tmp_path / "ticks.csv", ["timestamp,symbol,price", f"{T0},AAPL,185.5", f"{T0 + 5},AAPL,185.6"])
    ticks = await play(clients(path=str(path)), AAPL)
    assert [(t.ts, t.price, t.size, t.day_volume, t.bid) for t in ticks] == [
        (T0, 185.5, None, None, None),
        (T0 + 5, 185.6, None, None, None),
    ]


async def test_a_header_with_a_byte_order_mark_is_understood(tmp_path, clients):
    # Spreadsheet programs save CSV as UTF-8 with a BOM.
    path = write_csv(tmp_path / "ticks.csv", ["timestamp,symbol,price", f"{T0},AAPL,185.5"], encoding="utf-8-sig")
    ticks = await play(clients(path=str(path)), AAPL)
    assert [t.price for t in ticks] == [185.5]


async def test_a_plain_symbol_listed_on_two_exchanges_is_ambiguous_and_skipped(tmp_path, clients):
    nse_aapl = Subscription(instrument_id=9, symbol="AAPL", exchange="NSE")
    path = write_csv(
        tmp_path / "ticks.csv",
        ["timestamp,symbol,price", f"{T0},AAPL,1.0", f"{T0 + 1},NSE:AAPL,2.0", f"{T0 + 2},NASDAQ:AAPL,3.0"],
    )
    ticks = await play(clients(path=str(path)), AAPL, nse_aapl)
    assert [(t.instrument_id, t.price) for t in ticks] == [(9, 2.0), (1, 3.0)]


async def test_speed_zero_plays_as_fast_as_possible(tmp_path, clients):
    # An hour of data in 3000 rows.
    lines = ["timestamp,symbol,price,size"] + [f"{T0 + i * 1200},AAPL,{100 + i % 7}.5,1" for i in range(3000)]
    path = write_csv(tmp_path / "ticks.csv", lines)
    started = time.monotonic()
    ticks = await play(clients(path=str(path), speed=0), AAPL)
    assert len(ticks) == 3000
    assert time.monotonic() - started < 2.0
    assert [t.ts for t in ticks] == [T0 + i * 1200 for i in range(3000)]  # the file's times, unchanged


async def test_speed_paces_the_file_against_the_wall_clock(tmp_path, clients):
    # Two seconds of data at four times real speed: about half a second.
    path = write_csv(
        tmp_path / "ticks.csv", ["timestamp,symbol,price"] + [f"{T0 + i * 500},AAPL,10{i}.0" for i in range(5)]
    )
    client = clients(path=str(path), speed=4)
    await client.subscribe([AAPL])
    started = time.monotonic()
    await client.connect()
    arrivals: list[float] = []
    async with asyncio.timeout(5):
        while len(arrivals) < 5:
            batch = await client.next_batch()
            arrivals.extend(time.monotonic() - started for _ in batch)
    assert 0.4 <= arrivals[-1] <= 1.5
    assert arrivals[0] < 0.3  # the first tick is not delayed
    assert arrivals == sorted(arrivals) and arrivals[2] >= 0.2


async def test_loop_with_rebase_replays_the_file_again_in_the_present(tmp_path, clients):
    path = write_csv(
        tmp_path / "ticks.csv",
        [
            "timestamp,symbol,price",
            f"{iso(T0)},AAPL,100.0",
            f"{iso(T0 + 100)},NASDAQ:AAPL,100.5",
            f"{T0 + 200},AAPL,101.0",
        ],
    )
    client = clients(path=str(path), loop=True, rebase=True)
    await client.subscribe([AAPL])
    before = int(time.time() * 1000)
    await client.connect()
    ticks: list[Tick] = []
    async with asyncio.timeout(5):
        while len(ticks) < 9:
            ticks.extend(await client.next_batch())
    assert [t.price for t in ticks[:9]] == [100.0, 100.5, 101.0] * 3
    assert before <= ticks[0].ts <= int(time.time() * 1000)
    # Within a pass the file's spacing is kept; across passes time never runs backwards.
    for n in range(3):
        first = ticks[3 * n].ts
        assert [t.ts - first for t in ticks[3 * n : 3 * n + 3]] == [0, 100, 200]
    assert [t.ts for t in ticks] == sorted(t.ts for t in ticks)
    assert client.status == FeedStatus.STREAMING and not client.finished.is_set()


async def test_loop_without_rebase_repeats_the_recorded_times(tmp_path, clients):
    path = write_csv(tmp_path / "ticks.csv", ["timestamp,symbol,price", f"{T0},AAPL,1.0", f"{T0 + 100},AAPL,2.0"])
    client = clients(path=str(path), loop=True)
    await client.subscribe([AAPL])
    await client.connect()
    ticks: list[Tick] = []
    async with asyncio.timeout(5):
        while len(ticks) < 6:
            ticks.extend(await client.next_batch())
    assert [t.ts for t in ticks[:6]] == [T0, T0 + 100] * 3


async def test_a_missing_file_fails_the_feed_with_a_clear_error(tmp_path, clients):
    missing = tmp_path / "nowhere.csv"
    client = clients(path=str(missing))
    await client.subscribe([AAPL])
    await client.connect()
    await until(lambda: client.status == FeedStatus.FAILED)
    assert "replay file not found" in client.last_error and str(missing) in client.last_error
    assert not client.healthy and not client.finished.is_set()


async def test_no_path_at_all_fails_the_feed(clients):
    client = clients()
    await client.connect()
    await until(lambda: client.status == FeedStatus.FAILED)
    assert "replay file not found" in client.last_error


@pytest.mark.parametrize("header", ["time,ticker,last", "", "timestamp;symbol;price"])
async def test_a_file_without_the_required_columns_fails_the_feed(tmp_path, clients, header):
    path = write_csv(tmp_path / "ticks.csv", [header, f"{T0},AAPL,1.0"])
    client = clients(path=str(path))
    await client.subscribe([AAPL])
    await client.connect()
    await until(lambda: client.status == FeedStatus.FAILED)
    assert "header must name timestamp,symbol,price" in client.last_error
    assert client.stats.ticks == 0


async def test_subscription_changes_apply_while_the_file_plays(tmp_path, clients):
    # 1.2 s of data cycling through three instruments, played in real time.
    symbols = ["AAPL", "MSFT", "NSE:RELIANCE"]
    lines = ["timestamp,symbol,price"] + [f"{T0 + i * 20},{symbols[i % 3]},{100 + i}.0" for i in range(60)]
    client = clients(path=str(write_csv(tmp_path / "ticks.csv", lines)), speed=1)
    await client.subscribe([AAPL, MSFT])
    await client.connect()
    await asyncio.sleep(0.4)
    await client.unsubscribe([MSFT.instrument_id])
    await client.subscribe([RELIANCE])
    async with asyncio.timeout(5):
        await client.finished.wait()
    ticks = client.get_nowait_batch(10_000)
    early = {t.instrument_id for t in ticks if t.ts - T0 < 300}
    late = {t.instrument_id for t in ticks if t.ts - T0 > 700}
    assert early == {1, 2}
    assert late == {1, 3}


# --- the replayed file through the real engine vs an independent pandas resample -------


def _recorded_file(path, n: int = 3000, seed: int = 11):
    """``n`` ticks of three instruments over about eight minutes, in every accepted form."""
    rng = random.Random(seed)
    names = {1: ("NASDAQ", "AAPL"), 2: ("NASDAQ", "MSFT"), 3: ("NSE", "RELIANCE")}
    price = {1: 185.0, 2: 402.0, 3: 1420.0}
    cumulative = {1: 1_000_000, 2: 500_000, 3: 2_000_000}
    ts = T0 + 17_123
    lines = ["timestamp,symbol,price,size,day_volume,bid,ask"]
    for i in range(n):
        ts += rng.randint(1, 320)
        iid = rng.choice((1, 2, 3))
        exchange, symbol = names[iid]
        price[iid] = round(price[iid] * (1 + rng.gauss(0, 0.0008)), 2)
        size = rng.randint(1, 400)
        cumulative[iid] += size
        moment = datetime.fromtimestamp(ts / 1000, UTC)
        when = rng.choice(
            [
                iso(ts),
                str(ts),
                moment.astimezone(KOLKATA).isoformat(timespec="milliseconds"),
                moment.astimezone(NEW_YORK).isoformat(timespec="milliseconds"),
            ]
        )
        name = rng.choice([f"{exchange}:{symbol}", symbol])
        lines.append(f"{when},{name},{price[iid]:.2f},{size},{cumulative[iid]},,")
        if i % 500 == 250:
            lines.append(f"{iso(ts)},{name},n/a,{size},{cumulative[iid]},,")  # skipped by both sides
    return write_csv(path, lines)


def _pandas_bars(path) -> dict[tuple[int, int], tuple]:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["price"] = pd.to_numeric(df["price"], errors="coerce")
    df = df.dropna(subset=["price"])
    df["t"] = [
        pd.Timestamp(int(v), unit="ms", tz="UTC") if v.isdigit() else pd.Timestamp(v).tz_convert("UTC")
        for v in df["timestamp"]
    ]
    df["iid"] = df["symbol"].str.split(":").str[-1].map({"AAPL": 1, "MSFT": 2, "RELIANCE": 3})
    df["cum"] = df["day_volume"].astype("int64")
    # Volume is the change in cumulative day volume; an instrument's first tick adds none.
    df["vol"] = df.groupby("iid")["cum"].diff().fillna(0).astype("int64")
    expected = {}
    for iid, g in df.groupby("iid"):
        r = g.set_index("t").resample("1min").agg({"price": ["first", "max", "min", "last"], "vol": "sum"})
        for t, row in r.dropna().iterrows():
            expected[(int(iid), int(t.value // 1_000_000))] = tuple(row)
    return expected


async def test_bars_from_a_replayed_file_equal_a_pandas_resample(tmp_path, redis_store):
    path = _recorded_file(tmp_path / "recorded.csv")
    engine = Engine(store=redis_store)
    engine.set_instruments(
        [
            InstrumentMeta(1, "AAPL", "NASDAQ", "America/New_York"),
            InstrumentMeta(2, "MSFT", "NASDAQ", "America/New_York"),
            InstrumentMeta(3, "RELIANCE", "NSE", "Asia/Kolkata"),
        ]
    )
    await engine.restore()
    client = ReplayFeedClient(code="REPLAY", settings={"path": str(path), "speed": 0})
    await client.subscribe([AAPL, MSFT, RELIANCE])
    consumer = asyncio.create_task(engine.consume(client, batch_size=250))
    await client.connect()
    try:
        async with asyncio.timeout(20):
            await client.finished.wait()
            while engine.stats.ticks_in < client.stats.ticks:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        consumer.cancel()
        await client.disconnect()
    assert client.stats.ticks == 3000 and client.stats.malformed == 6
    await engine.close_bars(now_ms=engine.stats.last_tick_ms + 2 * MINUTE_MS)

    entries = await redis_store.persist_read("check", 100_000)
    ours = {(e.bar.instrument_id, e.bar.ts): e.bar for e in entries}
    expected = _pandas_bars(path)
    assert len(expected) >= 3 * 8
    assert set(ours) == set(expected)
    for key, (o, h, low, c, v) in expected.items():
        bar = ours[key]
        assert all(
            math.isclose(a, b, rel_tol=1e-12)
            for a, b in zip((bar.open, bar.high, bar.low, bar.close), (o, h, low, c), strict=True)
        ), key
        assert bar.volume == v, key
        assert bar.provider == "REPLAY"


async def test_a_full_queue_holds_the_file_back_and_loses_nothing(tmp_path):
    """At speed 0 a chunk is queued at once; a queue smaller than a chunk waits for the engine."""
    lines = ["timestamp,symbol,price,size"] + [f"{T0 + n},AAPL,{100 + n / 100:.2f},1" for n in range(3000)]
    client = ReplayFeedClient(
        code="REPLAY", settings={"path": str(write_csv(tmp_path / "t.csv", lines)), "speed": 0}, queue_size=100
    )
    await client.subscribe([AAPL])
    await client.connect()
    taken: list[Tick] = []
    try:
        async with asyncio.timeout(10):
            while len(taken) < 3000:
                assert client._queue.qsize() <= 100
                taken += await client.next_batch(40)
    finally:
        await client.disconnect()
    assert [t.ts for t in taken] == [T0 + n for n in range(3000)]
    assert client.stats.ticks == 3000
