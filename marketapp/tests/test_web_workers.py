"""The web tier on several processes: ``uvicorn --workers 2``, each worker with its own hub on
the shared Redis pub/sub, each publishing its own metrics snapshot."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson
import pytest
import redis
from websockets.asyncio.client import connect

from ingestion.metrics import SNAPSHOT_PREFIX
from marketdata.live.store.redis import RedisTickStore
from marketdata.tests.servers import Server, children
from marketdata.tests.ws_support import (
    access_token,
    make_engine,
    redis_layer_settings,
    redis_url,
    tick,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 2


def _socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of the TCP connection from ``client_port`` (from /proc/net/tcp)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return fields[9]
    return None


def _serving_pid(pids: set[int], server_port: int, client_port: int) -> int | None:
    """Which of ``pids`` holds the server side of the client's connection."""
    inode = _socket_inode(server_port, client_port)
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


@pytest.fixture
def uvicorn_workers(django_db_setup):
    """``uvicorn --workers 2`` with the hardened flags of the README, on the test database and Redis."""
    server = Server(
        "uvicorn",
        workers=WORKERS,
        options=["--ws-max-size", "65536", "--log-level", "warning"],
        env={"METRICS_SNAPSHOT_INTERVAL_S": "0.5"},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aapl(db):
    from exchanges.tests.factories import ExchangeFactory
    from instruments.tests.factories import InstrumentFactory

    return InstrumentFactory(symbol="AAPL", exchange=ExchangeFactory(code="NASDAQ", timezone="America/New_York"))


@pytest.fixture
async def store(settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    store = RedisTickStore(settings.REDIS_URL)
    yield store
    await store.close()


async def _next_data(ws) -> dict:
    while True:
        message = orjson.loads(await ws.recv())
        if message["message_type"] == "data":
            return message


async def test_two_workers_each_fan_out_a_published_update_and_publish_their_metrics(
    uvicorn_workers, store, user, aapl
):
    proc, port = uvicorn_workers.proc, uvicorn_workers.port
    workers = children(proc.pid)
    url = f"ws://127.0.0.1:{port}/ws?token={access_token(user)}"
    by_worker: dict[int, object] = {}
    spare = []
    async with asyncio.timeout(60):
        # The kernel spreads connections over the workers' accepts: connect until both have one.
        for _ in range(40):
            ws = await connect(url)
            pid = _serving_pid(workers, port, ws.local_address[1])
            assert pid in workers
            if pid in by_worker:
                spare.append(ws)
                continue
            by_worker[pid] = ws
            if len(by_worker) == WORKERS:
                break
        assert len(by_worker) == WORKERS, f"all connections went to {set(by_worker)}"
        for ws in by_worker.values():
            await ws.send(orjson.dumps({"message_type": "subscribe", "channel": "AAPL"}).decode())
            assert orjson.loads(await ws.recv()) == {"message_type": "info", "message": "Subscribed to AAPL"}

        engine = await make_engine(store, aapl)
        await engine.process([tick(aapl, 187.25)])
        for ws in by_worker.values():
            data = await _next_data(ws)
            assert (data["symbol"], data["exchange"], data["close"]) == ("AAPL", "NASDAQ", 187.25)
        for ws in [*by_worker.values(), *spare]:
            await ws.close()

    # Each worker process publishes its own snapshot for /metrics.
    workers = set(by_worker)  # the supervisor's other children (multiprocessing's helpers) serve nothing
    client = redis.Redis.from_url(redis_url())
    try:
        deadline = time.monotonic() + 10
        while True:
            keys = {k.decode() for k in client.scan_iter(match=f"{SNAPSHOT_PREFIX}*")}
            published = {int(k.rsplit(":", 1)[1]) for k in keys} & workers
            if published == workers or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        client.close()
    assert published == workers
    # Each worker froze its start-up objects out of the collector's full passes (lifespan startup).
    log = uvicorn_workers.tail(200_000)
    assert log.count("web: ") >= WORKERS and "start-up objects frozen out of the garbage collector" in log, log
