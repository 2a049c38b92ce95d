"""One fan-out run of ``bench.fanout``: the symbols, the server under test, the publisher, the figures.

``seed_symbols`` and ``spread`` set up the 100 ``FAN000``... symbols and who subscribes to
what; ``start_server`` starts daphne, uvicorn or the ``bench.ws_baseline`` server;
``publish`` sends quote updates through the engine's own channel-layer publisher;
``run_fanout`` drives one server with the load generators and the publisher and ``analyse``
turns what arrived into delivered rate, latency percentiles and missing / dropped /
conflated updates; ``idle_memory`` measures the server's memory per idle connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

import numpy as np
import orjson

from bench import common, environment, procs, usage
from bench.loadgen import LoadGenerators

PREFIX = "marketapp-bench-fanout"  # channel-layer prefix (pub/sub ignores Redis db numbers)
EXCHANGE = "BENCHWS"
SYMBOL_COUNT = 100


# --- set-up ---------------------------------------------------------------------------------------
def seed_symbols(count: int = SYMBOL_COUNT) -> dict[str, int]:
    """``count`` instruments ``FAN000``... on the bench exchange; ``{symbol: instrument id}``."""
    from exchanges.models import Exchange
    from instruments.models import Instrument, InstrumentType

    exchange, _ = Exchange.objects.get_or_create(
        code=EXCHANGE,
        defaults={"name": "Benchmark exchange", "timezone": "Asia/Kolkata", "currency": "INR", "country": "India"},
    )
    kind, _ = InstrumentType.objects.get_or_create(code="EQ", defaults={"name": "Equity"})
    wanted = {f"FAN{i:03d}": i for i in range(count)}
    have = set(Instrument.objects.filter(exchange=exchange, symbol__in=wanted).values_list("symbol", flat=True))
    Instrument.objects.bulk_create(
        [
            Instrument(exchange=exchange, symbol=symbol, name=f"Fan-out {i}", instrument_type=kind)
            for symbol, i in wanted.items()
            if symbol not in have
        ],
        batch_size=1000,
    )
    rows = Instrument.objects.filter(exchange=exchange, symbol__in=wanted).values_list("symbol", "pk")
    return dict(sorted(rows, key=lambda row: wanted[row[0]]))


def spread(symbols: list[str], clients: int, per_client: int) -> list[list[str]]:
    """Client ``i`` takes symbols ``i, i+10, i+20...`` (mod n): every symbol gets the same audience."""
    n = len(symbols)
    step = n // per_client
    return [[symbols[(i + k * step) % n] for k in range(per_client)] for i in range(clients)]


WORKERS_KIND = "uvicorn-2w"  # uvicorn --workers 2


def start_server(kind: str, name: str, symbols: dict[str, int]) -> procs.Process:
    if kind == "baseline":
        common.DATA_DIR.mkdir(parents=True, exist_ok=True)
        path = common.DATA_DIR / "fanout-symbols.json"
        path.write_text(json.dumps(symbols))
        port = procs.free_port()
        cmd = [
            common.PYTHON,
            "-m",
            "bench.ws_baseline",
            "--port",
            str(port),
            "--redis-url",
            environment.bench_redis_url(),
            "--prefix",
            PREFIX,
            "--symbols",
            str(path),
        ]
        proc = procs.Process(name=name, cmd=cmd, core=common.SERVER_CORE, port=port)
    elif kind == WORKERS_KIND:
        # Two uvicorn worker processes (README, Production), each with its own hub on the shared
        # Redis pub/sub; they may use both cores, which the load generators share on this machine.
        proc = procs.server("uvicorn", name, workers=2, core=(0, 1), CHANNEL_LAYER_PREFIX=PREFIX)
    else:
        proc = procs.server(kind, name, CHANNEL_LAYER_PREFIX=PREFIX)
    return proc.start()


# --- the publisher ----------------------------------------------------------------------------------
async def publish(symbols: dict[str, int], *, rate: float, duration: float, exchange: str = EXCHANGE) -> dict:
    """Publish ``rate`` updates/s round-robin over ``symbols`` for ``duration`` s; returns what was sent."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from marketdata.live.protocol import ChannelLayerPublisher, quote_group, quote_payload
    from marketdata.live.types import Quote

    layer = RedisPubSubChannelLayer(hosts=[environment.bench_redis_url()], prefix=PREFIX)
    publisher = ChannelLayerPublisher(layer)
    names = list(symbols)
    now_ms = int(time.time() * 1000)
    quotes = {
        s: Quote(iid, now_ms, 100.0, 100.0, 101.0, 99.0, 1000, previous_close=99.5, bid=99.9, ask=100.1)
        for s, iid in symbols.items()
    }
    groups = {s: quote_group(iid) for s, iid in symbols.items()}
    total = int(rate * duration)
    # One batch per 5 ms tick, as the engine publishes one batch per step. Sleeping only until
    # the next update was due made ~1,300 publishes of 1-2 updates a second at 2,000 updates/s,
    # and the publisher (redis-py's per-command work) used a quarter of the load side's core.
    tick = 0.005
    ticks = 0
    loop = asyncio.get_running_loop()
    sent = 0
    started_ns = time.time_ns()
    t0 = loop.time()
    dumps = orjson.dumps
    while sent < total:
        target = min(total, int((loop.time() - t0) * rate) + 1)
        batch = []
        while sent < target:
            symbol = names[sent % len(names)]
            q = quotes[symbol]
            q.seq += 1
            q.last = 100.0 + (q.seq % 100) / 100
            q.ts = int(time.time() * 1000)
            payload = quote_payload(q, symbol, exchange)
            payload["sent_ns"] = time.time_ns()  # last key: the load generator reads it from the end
            batch.append((groups[symbol], dumps(payload).decode()))
            sent += 1
        if batch:
            await publisher.publish(batch)
        ticks += 1
        await asyncio.sleep(max(0.0, t0 + ticks * tick - loop.time()))
    elapsed = loop.time() - t0
    with contextlib.suppress(Exception):
        await layer.flush()
    return {
        "published": sent,
        "publish_rate": sent / elapsed if elapsed else 0.0,
        "started_ns": started_ns,
        "seconds": elapsed,
        "per_symbol": {s: q.seq for s, q in quotes.items()},
    }


# --- one run -----------------------------------------------------------------------------------------
def analyse(result: dict, pub: dict, clients: list[list[str]]) -> dict:
    """Delivered rate, latency percentiles, missing / dropped / conflated updates."""
    per_symbol = pub["per_symbol"]
    expected = sum(per_symbol[s] for syms in clients[: result["opened"]] for s in syms)
    delivered = result["received"]
    dropped_pairs = 0
    for seqs, syms in zip(result["seqs"], clients, strict=False):
        for s in syms:
            state = seqs.get(s)  # [last seq, received]
            if state is None or state[0] < per_symbol[s]:
                dropped_pairs += 1
    lat = np.sort(result["latencies_ns"]) / 1e6
    window = max((result.get("last_ns", 0) - pub["started_ns"]) / 1e9, pub["seconds"])
    missing = expected - delivered
    return {
        "clients": result["opened"],
        "failed_connections": result["failed"],
        "still_open": result["still_open"],
        "published": pub["published"],
        "publish_rate": round(pub["publish_rate"], 1),
        "expected": expected,
        "delivered": delivered,
        "delivered_per_s": round(delivered / window, 1) if window else 0.0,
        "delivery_window_s": round(window, 2),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p99": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
            "max": round(float(lat[-1]), 2) if lat.size else None,
        },
        "missing": missing,
        "missing_pct": round(100 * missing / expected, 2) if expected else 0.0,
        "dropped_final_updates": dropped_pairs,
        "conflated": missing - dropped_pairs,
        "errors": result["errors"][:5],
    }


async def run_fanout(
    kind: str,
    symbols: dict[str, int],
    clients: list[list[str]],
    *,
    token: str,
    rate: float,
    duration: float,
    processes: int,
    drain: float,
    profile: str | None = None,
    batch_ms: int = 0,
) -> dict:
    """One server under one load; ``batch_ms`` > 0: every client asks for batched frames (``?batch_ms=``)."""
    server = start_server(kind, f"fanout-{kind}", symbols)
    lg = LoadGenerators(
        name=f"fanout-{kind}",
        host="127.0.0.1",
        port=server.port,
        path=f"/ws?token={token}" + (f"&batch_ms={batch_ms}" if batch_ms else ""),
        mode="fanout",
        core=common.LOAD_CORE,
    )
    spy = None
    try:
        await lg.start(clients, processes=processes)
        await asyncio.sleep(0.5)
        await lg.mark()
        if profile:
            spy = await asyncio.create_subprocess_exec(
                str(common.ROOT / ".venv" / "bin" / "py-spy"),
                "record",
                "--pid",
                str(server.proc.pid),
                "--duration",
                str(int(duration)),
                "--rate",
                "200",
                "--format",
                "raw" if profile.endswith(".txt") else "flamegraph",
                "--output",
                profile,
                "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        window = usage.CpuWindow(
            server={"server": server.proc.pid}, loadgen={**lg.pids(), "publisher": os.getpid()}
        ).start()
        cpu0 = usage.tree_cpu_seconds(server.proc.pid)  # workers included
        pub = await publish(symbols, rate=rate, duration=duration)
        cpu = window.stop()
        await asyncio.sleep(drain)
        late_s = await lg.settle(quiet=0.5, within=60.0)  # a server behind still delivers
        cpu2 = usage.tree_cpu_seconds(server.proc.pid)
        result = await lg.stop()
        figures = analyse(result, pub, clients)
        figures["batch_ms"] = batch_ms
        figures["drain_s"] = round(drain + late_s, 1)
        figures.update(cpu)
        # CPU per delivered message: the cost figure that holds when the machine is shared
        figures["server_cpu_us_per_msg"] = round(1e6 * (cpu2 - cpu0) / max(figures["delivered"], 1), 2)
        figures["deliveries_per_server_cpu_s"] = round(figures["delivered"] / max(cpu2 - cpu0, 1e-9), 1)
        return figures
    finally:
        await lg.kill()
        if spy is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(spy.wait(), 30)
        server.stop()


async def idle_memory(
    kind: str, symbols: dict[str, int], *, token: str, connections: int, processes: int, settle: float = 2.0
) -> dict:
    """Server RSS before/after ``connections`` idle authenticated connections, 1 symbol each."""
    server = start_server(kind, f"fanout-mem-{kind}", symbols)
    names = list(symbols)
    try:
        warm = LoadGenerators(
            name=f"mem-warm-{kind}", host="127.0.0.1", port=server.port, path=f"/ws?token={token}", mode="idle", core=1
        )
        await warm.start([[names[i % len(names)]] for i in range(20)], processes=1)
        await warm.stop()
        await asyncio.sleep(settle / 2)
        before = server.rss_kib()
        lg = LoadGenerators(
            name=f"mem-{kind}", host="127.0.0.1", port=server.port, path=f"/ws?token={token}", mode="idle", core=1
        )
        started = time.monotonic()
        try:
            await lg.start([[names[i % len(names)]] for i in range(connections)], processes=processes, within=300)
            opened_s = time.monotonic() - started
            await asyncio.sleep(settle)
            after = server.rss_kib()
            opened = lg.opened
        finally:
            await lg.stop()
        return {
            "connections": opened,
            "failed": lg.failed,
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "kib_per_connection": round((after - before) / max(opened, 1), 1),
            "connect_subscribe_s": round(opened_s, 1),
        }
    finally:
        server.stop()
