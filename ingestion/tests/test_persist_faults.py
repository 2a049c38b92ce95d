"""The saver under faults, with real processes, the real PostgreSQL and real Redis servers.

- ``persist_bars`` SIGKILLed again and again (often mid-flush) while ``ingest`` replays a tick
  file: PostgreSQL ends up with exactly the bars pandas computes from the file.
- PostgreSQL unreachable (the saver connects through a TCP proxy the test closes): the
  backlog waits in Redis, the saver backs off and logs, and catches up when it returns.
- Redis restarted (a test-owned ``redis-server`` with an append-only file): the engine and
  the saver reconnect by themselves and no bar acknowledged before the restart is lost.

Tick files are dated a minute or more into the future and replayed faster than real time,
so no bar's minute ends on the wall clock while its ticks are still arriving: bars close
only when the next minute's tick comes, as in a live feed, and the last bar of each
instrument stays open (in ``md:ob``) when the file ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import orjson
import pandas as pd
import pytest
import redis
from django.conf import settings
from django.db import connection

from exchanges.tests.factories import ExchangeFactory
from ingestion.models import Provider
from ingestion.tests.factories import ExchangeProviderMappingFactory, ProviderFactory
from ingestion.tests.support import redis_db
from instruments.tests.factories import InstrumentFactory
from marketdata.live.store import StoreBatch
from marketdata.live.store.redis import RedisTickStore
from marketdata.live.types import MINUTE_MS, Bar
from marketdata.models import PriceHistoryIntraday

ROOT = Path(settings.BASE_DIR)
PERSIST, GROUP, OPEN_BARS, QUOTES = "md:persist", "savers", "md:ob", "md:q"
EXCHANGE = "XFLT"

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
__all__ = ["redis_db"]  # the fixture, from the support module


# --- processes ----------------------------------------------------------------------------


def database_url(port: int | None = None) -> str:
    """The pytest-django test database, optionally through another port (the proxy)."""
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{port or db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, within: float, every: float = 0.05) -> bool:
    """Poll ``predicate`` for up to ``within`` seconds; whether it came true."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def wait_for(predicate, within: float, what: str, every: float = 0.05) -> None:
    if not wait_until(predicate, within, every):
        raise AssertionError(f"timed out after {within} s waiting for {what}")


class Processes:
    """Starts ``manage.py`` commands (and servers) and makes sure none outlives the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}

    def manage(self, *args: str, name: str, **env: str) -> subprocess.Popen:
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        return self.run([sys.executable, "manage.py", *args], name=name, env=full_env)

    def run(self, argv: list[str], *, name: str, env: dict | None = None) -> subprocess.Popen:
        log = self.tmp_path / f"{name}.log"
        with log.open("a") as out:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        self.logs[process.pid] = log
        return process

    def output(self, process: subprocess.Popen) -> str:
        return self.logs[process.pid].read_text()

    def logged(self, process: subprocess.Popen, text: str) -> bool:
        return text in self.output(process)

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGINT, within: float = 15) -> int:
        """Send ``sig`` and wait; a process that does not stop in time is killed and fails the test."""
        process.send_signal(sig)
        try:
            return process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{process.args} did not stop within {within} s:\n{self.output(process)}") from None

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def processes(transactional_db, tmp_path):
    """Depends on the database fixture so every process is gone before the tables are emptied."""
    procs = Processes(tmp_path)
    yield procs
    procs.kill_all()


def consumer_of(process: subprocess.Popen) -> bytes:
    """The saver's consumer name in the group (``host-pid``, the default)."""
    return f"{socket.gethostname()}-{process.pid}".encode()


def in_transaction(application_name: str) -> bool:
    """Whether that process's database connection is inside a transaction right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL",
            [application_name],
        )
        return cursor.fetchone() is not None


def pending_of(client: redis.Redis, consumer: bytes) -> int:
    """Entries the consumer read and never acknowledged."""
    try:
        summary = client.xpending(PERSIST, GROUP)
    except redis.ResponseError:  # no group yet
        return 0
    return next((c["pending"] for c in summary["consumers"] if c["name"] == consumer), 0)


# --- the tick file and the independent computation ---------------------------------------


def future_minute(ahead_s: int = 90) -> int:
    """A minute boundary at least ``ahead_s`` from now, in epoch ms."""
    at = int(time.time() * 1000) + ahead_s * 1000
    return at - at % MINUTE_MS + MINUTE_MS


def write_tick_file(
    path: Path, symbols: list[str], *, start_ms: int, minutes: int, seed: int, max_gap_ms: int = 99
) -> int:
    """Random-walk ticks of ``symbols`` over ``minutes``, ascending in time; returns the row count."""
    rng = random.Random(seed)
    price = {s: round(rng.uniform(20, 2000), 2) for s in symbols}
    cumulative = {s: rng.randint(0, 5_000_000) for s in symbols}
    ts = start_ms + rng.randint(0, 500)
    end = start_ms + minutes * MINUTE_MS
    lines = ["timestamp,symbol,price,size,day_volume"]
    while ts < end:
        symbol = rng.choice(symbols)
        price[symbol] = max(0.05, round(price[symbol] * (1 + rng.gauss(0, 0.001)), 2))
        size = rng.randint(1, 500)
        cumulative[symbol] += size
        lines.append(f"{ts},{symbol},{price[symbol]:.2f},{size},{cumulative[symbol]}")
        ts += rng.randint(1, max_gap_ms)
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def pandas_bars(path: Path, ids: dict[str, int]) -> dict[tuple[int, int], tuple]:
    """1-minute OHLCV per instrument computed from the file alone (not by the engine's code).

    Volume is the change in cumulative day volume; an instrument's first tick adds none.
    """
    df = pd.read_csv(path, dtype={"symbol": str})
    df["iid"] = df["symbol"].map(ids)
    df["t"] = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
    df["vol"] = df.groupby("iid")["day_volume"].diff().fillna(0).astype("int64")
    expected = {}
    for iid, g in df.groupby("iid"):
        r = g.set_index("t").resample("1min").agg({"price": ["first", "max", "min", "last"], "vol": "sum"})
        for t, row in r.dropna().iterrows():
            o, h, low, c, v = row.tolist()
            expected[(int(iid), int(t.value // 1_000_000))] = (o, h, low, c, int(v))
    return expected


def split_open(expected: dict[tuple[int, int], tuple]) -> tuple[dict, dict]:
    """(closed bars, the last bar of each instrument, which stays open when the file ends)."""
    last: dict[int, int] = {}
    for iid, ts in expected:
        last[iid] = max(ts, last.get(iid, ts))
    still_open = {(iid, ts): expected[(iid, ts)] for iid, ts in last.items()}
    return {k: v for k, v in expected.items() if k not in still_open}, still_open


def saved_bars() -> dict[tuple[int, int], tuple]:
    rows = PriceHistoryIntraday.objects.filter(interval="1m").values_list(
        "instrument_id", "timestamp", "open", "high", "low", "close", "volume"
    )
    out: dict[tuple[int, int], tuple] = {}
    for iid, stamp, *values in rows:
        key = (iid, int(stamp.timestamp() * 1000))
        assert key not in out, f"bar {key} saved twice"
        out[key] = tuple(values)
    return out


def stream_bars(client: redis.Redis) -> list[Bar]:
    """The closed bars waiting in the persist stream."""
    return [Bar.from_dict(orjson.loads(fields[b"bar"])) for _id, fields in client.xrange(PERSIST)]


def open_bars(client: redis.Redis) -> dict[tuple[int, int], tuple]:
    bars = [Bar.from_dict(orjson.loads(raw)) for raw in client.hgetall(OPEN_BARS).values()]
    return {(b.instrument_id, b.ts): (b.open, b.high, b.low, b.close, b.volume) for b in bars}


def replay_setup(path: Path, *, speed: float, count: int) -> dict[str, int]:
    """The REPLAY provider serving ``count`` instruments of one exchange; symbol -> instrument id."""
    replay = ProviderFactory(code="REPLAY", kind=Provider.Kind.REPLAY, settings={"path": str(path), "speed": speed})
    exchange = ExchangeFactory(code=EXCHANGE, timezone="UTC")
    ExchangeProviderMappingFactory(exchange=exchange, provider=replay, is_primary=True, priority=1)
    return {f"{EXCHANGE}:S{n:02d}": InstrumentFactory(exchange=exchange, symbol=f"S{n:02d}").id for n in range(count)}


def engine_done(client: redis.Redis, path: Path, ids: dict[str, int]):
    """A predicate: every instrument's latest quote is its last tick in the file."""
    df = pd.read_csv(path, dtype={"symbol": str})
    last = {ids[s]: int(ts) for s, ts in df.groupby("symbol")["timestamp"].max().items()}

    def done() -> bool:
        raw = client.hmget(QUOTES, list(last))
        return all(r is not None and orjson.loads(r)["ts"] == last[iid] for iid, r in zip(last, raw, strict=True))

    return done


def assert_exact(expected: dict[tuple[int, int], tuple], client: redis.Redis) -> None:
    """PostgreSQL holds every closed bar of the file, once, equal to pandas; the rest is open."""
    closed, still_open = split_open(expected)
    saved = saved_bars()
    assert len(saved) == len(closed)
    assert sorted(set(closed) - set(saved)) == [], "bars missing from PostgreSQL"
    assert sorted(set(saved) - set(closed)) == [], "bars in PostgreSQL that the file does not have"
    wrong = {k: (saved[k], closed[k]) for k in closed if saved[k] != closed[k]}
    assert wrong == {}, f"{len(wrong)} bars differ (saved, expected): {list(wrong.items())[:5]}"
    assert open_bars(client) == still_open
    assert client.xlen(PERSIST) == 0
    assert client.xpending(PERSIST, GROUP)["pending"] == 0


# --- the persist_bars process ------------------------------------------------------------


def queue_bars(url: str, bars: list[Bar]) -> None:
    """Hand closed bars to the persist stream the way the engine does."""

    async def write() -> None:
        store = RedisTickStore(url)
        try:
            await store.write(StoreBatch(closed_bars=bars))
        finally:
            await store.close()

    asyncio.run(write())


def some_bars(ids: list[int], start_ms: int, minutes: int) -> list[Bar]:
    return [
        Bar(iid, start_ms + m * MINUTE_MS, 10.0 + m, 11.0 + m, 9.0 + m, 10.5 + m, 100 * m + iid, 3, "1m", "")
        for iid in ids
        for m in range(minutes)
    ]


def as_saved(bars: list[Bar]) -> dict[tuple[int, int], tuple]:
    return {(b.instrument_id, b.ts): (b.open, b.high, b.low, b.close, b.volume) for b in bars}


def test_persist_bars_saves_continuously_and_stops_cleanly_on_sigterm(processes, redis_db):
    ids = [InstrumentFactory().id for _ in range(3)]
    bars = some_bars(ids, future_minute(), 4)
    saver = processes.manage("persist_bars", "--interval", "0.1", "--batch-size", "5", name="saver")
    queue_bars(settings.REDIS_URL, bars[:6])
    wait_for(lambda: len(saved_bars()) == 6, 20, "the first bars in PostgreSQL")
    queue_bars(settings.REDIS_URL, bars[6:])
    wait_for(lambda: len(saved_bars()) == len(bars), 10, "the rest in PostgreSQL")
    assert processes.stop(saver, signal.SIGTERM) == 0
    output = processes.output(saver)
    assert f"as consumer {consumer_of(saver).decode()}" in output
    assert "Stopped: 12 bars saved (0 taken over, 0 dropped)." in output
    assert "Traceback" not in output
    assert saved_bars() == as_saved(bars)
    assert redis_db.xlen(PERSIST) == 0


# --- fault 1: SIGKILL mid-flush, again and again ------------------------------------------


def test_a_saver_killed_again_and_again_mid_flush_loses_and_doubles_nothing(processes, redis_db, tmp_path):
    path = tmp_path / "ticks.csv"
    symbols = [f"{EXCHANGE}:S{n:02d}" for n in range(20)]
    rows = write_tick_file(path, symbols, start_ms=future_minute(), minutes=40, seed=5, max_gap_ms=130)
    assert 30_000 <= rows <= 45_000
    ids = replay_setup(path, speed=100, count=len(symbols))
    expected = pandas_bars(path, ids)
    assert len(expected) >= 20 * 39

    engine = processes.manage("ingest", "--provider", "REPLAY", "--refresh", "60", name="engine")
    done = engine_done(redis_db, path, ids)
    saver_args = ("persist_bars", "--interval", "0.05", "--batch-size", "7", "--claim-idle-ms", "300")
    rng = random.Random(7)
    moments = {
        # Inside the database transaction (between the read and the commit), or dead meanwhile.
        "in-transaction": lambda saver, app: in_transaction(app) or saver.poll() is not None,
        # Holding a batch it read and has not acknowledged (writing it, or between commit and ack).
        "unacknowledged": lambda saver, app: pending_of(redis_db, consumer_of(saver)) > 0 or saver.poll() is not None,
    }
    kills: list[tuple[str, int]] = []  # (moment, entries the killed saver left pending)
    deadline = time.monotonic() + 90  # generous: the machine may be busy with other work
    while not done():
        assert time.monotonic() < deadline, f"the replay did not finish: {processes.output(engine)[-2000:]}"
        assert engine.poll() is None, processes.output(engine)
        n = len(kills)
        app = f"hsave-saver-{n}"
        url = f"{database_url()}?application_name={app}"
        saver = processes.manage(*saver_args, name=f"saver-{n}", DATABASE_URL=url)
        moment = ["in-transaction", "unacknowledged", "random"][n % 3]
        # Once it runs (and, unless the moment is random, has saved something), strike.
        wait_for(partial(processes.logged, saver, "Saving bars every"), 30, "the saver to start")
        if moment == "random":
            time.sleep(rng.uniform(0, 1.5))
        else:
            wait_until(partial(processes.logged, saver, "bars saved"), 10)
            time.sleep(rng.uniform(0, 0.5))
            wait_until(partial(moments[moment], saver, app), 5, every=0.0005)
        saver.kill()  # SIGKILL: no handler, no cleanup
        assert saver.wait(timeout=10) == -signal.SIGKILL, processes.output(saver)
        kills.append((moment, pending_of(redis_db, consumer_of(saver))))
    assert len(kills) >= 4, kills
    # The kill races the saver's commit and ack, so some land just after; most leave a batch behind.
    assert any(left for moment, left in kills if moment in moments), f"no kill left a batch behind: {kills}"

    assert processes.stop(engine) == 0, processes.output(engine)
    saved_while_streaming = len(saved_bars())
    assert saved_while_streaming > 0
    time.sleep(0.4)  # the last killed saver's entries are now idle past --claim-idle-ms
    final = subprocess.run(
        [sys.executable, "manage.py", "persist_bars", "--once", "--batch-size", "50", "--claim-idle-ms", "300"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert final.returncode == 0, final.stderr
    assert re.fullmatch(r"\d+ bars saved \(\d+ taken over, 0 dropped\); 0 still pending\.\n", final.stdout)
    assert_exact(expected, redis_db)
    # The batches the killed savers held were taken over by the next ones (or the final flush).
    logs = "".join(path.read_text() for path in tmp_path.glob("saver-*.log")) + final.stdout
    assert sum(int(n) for n in re.findall(r"\((\d+) taken over", logs)) > 0
    print(f"{len(kills)} kills: {kills}; {saved_while_streaming} saved while streaming; final: {final.stdout.strip()}")


# --- fault 2: PostgreSQL unreachable -----------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to a server; ``cut()`` refuses connections and drops live ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Close the port (new connections are refused) and break every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            live, self._sockets = self._sockets, set()
        for sock in live:
            self._close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src)
            self._close(dst)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_postgresql_unreachable_the_backlog_waits_in_redis_and_is_written_when_it_returns(processes, redis_db):
    ids = [InstrumentFactory().id for _ in range(5)]
    bars = some_bars(ids, future_minute(), 20)
    first, backlog = bars[:25], bars[25:]
    db = settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    proxy.open()
    try:
        saver = processes.manage(
            "persist_bars",
            "--interval",
            "0.1",
            "--batch-size",
            "40",
            name="saver",
            DATABASE_URL=database_url(proxy.port),
        )
        queue_bars(settings.REDIS_URL, first)
        wait_for(lambda: len(saved_bars()) == len(first), 20, "the first bars saved through the proxy")

        proxy.cut()  # PostgreSQL is gone for the saver (refused, and its connection broken)
        queue_bars(settings.REDIS_URL, backlog)
        # Each attempt fails at once without a pool, after DB_POOL_TIMEOUT_S (3 s) with Django's pool.
        wait_for(lambda: processes.output(saver).count("saver: flush failed") >= 3, 30, "three failed flushes")
        assert saver.poll() is None
        assert redis_db.xlen(PERSIST) == len(backlog)  # all of it still in Redis, none acknowledged
        assert len(saved_bars()) == len(first)
        delays = [
            float(d) for d in re.findall(r"saver: flush failed .*; retrying in ([\d.]+)s", processes.output(saver))
        ]
        assert delays[:3] == [1.0, 2.0, 4.0]  # backing off, not hammering

        proxy.open()
        wait_for(lambda: redis_db.xlen(PERSIST) == 0, 20, "the backlog saved once PostgreSQL is back")
        assert saved_bars() == as_saved(bars)
        assert processes.stop(saver, signal.SIGTERM) == 0
    finally:
        proxy.cut()
    output = processes.output(saver)
    assert "OperationalError" in output or "PoolTimeout" in output  # PoolTimeout is an OperationalError
    assert f"Stopped: {len(bars)} bars saved" in output
    assert "Traceback" not in output


# --- fault 3: Redis restarted -------------------------------------------------------------


class RedisServer:
    """A test-owned ``redis-server`` persisting every write to its append-only file."""

    def __init__(self, processes: Processes, directory: Path) -> None:
        self.processes = processes
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        directory.mkdir()

    def start(self) -> None:
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory), "--save", ""]
        self.process = self.processes.run(argv, name="redis-server")
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return client.ping()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                return False

        try:
            wait_for(up, 10, "redis-server to answer")
        finally:
            client.close()

    def stop(self) -> None:
        assert self.processes.stop(self.process, signal.SIGTERM) == 0


def test_redis_restarted_the_engine_and_the_saver_reconnect_and_lose_nothing(processes, tmp_path):
    server = RedisServer(processes, tmp_path / "redis")
    server.start()
    client = redis.Redis.from_url(server.url)
    path = tmp_path / "ticks.csv"
    symbols = [f"{EXCHANGE}:S{n:02d}" for n in range(20)]
    write_tick_file(path, symbols, start_ms=future_minute(), minutes=25, seed=9)
    ids = replay_setup(path, speed=100, count=len(symbols))
    expected = pandas_bars(path, ids)
    env = {"REDIS_URL": server.url}

    engine = processes.manage("ingest", "--provider", "REPLAY", "--refresh", "60", name="engine", **env)
    saver = processes.manage("persist_bars", "--interval", "0.2", "--claim-idle-ms", "2000", name="saver", **env)
    wait_for(lambda: len(saved_bars()) >= 60, 30, "bars saved before the restart")

    # What was acknowledged before the restart: bars Redis accepted from the engine, and rows committed.
    queued = {(b.instrument_id, b.ts) for b in stream_bars(client)}
    committed = saved_bars()
    server.stop()
    time.sleep(2)
    assert engine.poll() is None and saver.poll() is None  # both wait for Redis, neither gives up
    server.start()
    wait_for(lambda: len(saved_bars()) > len(committed) + 40, 30, "new bars saved after the restart")
    wait_for(engine_done(client, path, ids), 40, "the engine to reach the end of the file")
    assert processes.stop(engine) == 0, processes.output(engine)
    wait_for(lambda: client.xlen(PERSIST) == 0, 20, "the saver to drain the stream")
    assert processes.stop(saver, signal.SIGTERM) == 0, processes.output(saver)

    final = saved_bars()
    assert {k: final.get(k) for k in committed} == committed  # nothing committed before was lost
    assert queued <= set(final)  # nor anything Redis had accepted from the engine
    assert_exact(expected, client)
    assert "tick store unavailable" in processes.output(engine)
    assert "saver: flush failed" in processes.output(saver)
    for process in (engine, saver):
        assert "Traceback" not in processes.output(process)
    client.close()
