"""``python -m bench.fanout [--quick]``: live quotes from the channel layer to 1,000 WebSocket clients.

The real web server (daphne, then uvicorn, each on core 0) with the Redis pub/sub channel
layer; 1,000 clients (4 load-generator processes x 250 connections, on core 1), each
subscribed to 10 of 100 symbols, so every symbol has 100 subscribers; a publisher (this
process, core 1) sends 2,000 quote updates per second (20 per symbol) for 30 s (quick:
5 s) through ``marketdata.live.protocol.ChannelLayerPublisher``, the engine's own publisher, with
real quote payloads carrying ``sent_ns`` (``time.time_ns()`` when the update was encoded).

Reported per server: delivered messages per second, latency publish -> client receive
(p50, p99, max), and what did not arrive: ``missing`` = expected - delivered, where expected
is the sum over clients of the updates published to their symbols; ``dropped`` counts
(client, symbol) pairs whose final update never arrived (a real loss: conflation always
keeps the newest update), the rest of ``missing`` is conflation (an older pending update
replaced by a newer one, by design, for a client or server that falls behind).

Baseline: ``bench.ws_baseline``, a minimal ``websockets`` server reading the same Redis
pub/sub channels, same clients, same input, same run. Then memory per idle connection:
server RSS before and after opening 10,000 (quick: 2,000) authenticated connections
subscribed to one symbol each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import orjson

from bench import common
from bench.loadgen import LoadGenerators, raise_nofile

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
    out = {}
    for i in range(count):
        symbol = f"FAN{i:03d}"
        instrument, _ = Instrument.objects.get_or_create(
            exchange=exchange, symbol=symbol, defaults={"name": f"Fan-out {i}", "instrument_type": kind}
        )
        out[symbol] = instrument.pk
    return out


def spread(symbols: list[str], clients: int, per_client: int) -> list[list[str]]:
    """Client ``i`` takes symbols ``i, i+10, i+20...`` (mod n): every symbol gets the same audience."""
    n = len(symbols)
    step = n // per_client
    return [[symbols[(i + k * step) % n] for k in range(per_client)] for i in range(clients)]


def start_server(kind: str, name: str, symbols: dict[str, int]) -> common.Process:
    if kind == "baseline":
        common.DATA_DIR.mkdir(parents=True, exist_ok=True)
        path = common.DATA_DIR / "fanout-symbols.json"
        path.write_text(json.dumps(symbols))
        port = common.free_port()
        cmd = [
            common.PYTHON,
            "-m",
            "bench.ws_baseline",
            "--port",
            str(port),
            "--redis-url",
            common.bench_redis_url(),
            "--prefix",
            PREFIX,
            "--symbols",
            str(path),
        ]
        proc = common.Process(name=name, cmd=cmd, core=common.SERVER_CORE, port=port)
    else:
        proc = common.server(kind, name, CHANNEL_LAYER_PREFIX=PREFIX)
    return proc.start()


# --- the publisher ----------------------------------------------------------------------------------
async def publish(symbols: dict[str, int], *, rate: float, duration: float, exchange: str = EXCHANGE) -> dict:
    """Publish ``rate`` updates/s round-robin over ``symbols`` for ``duration`` s; returns what was sent."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from marketdata.live.protocol import ChannelLayerPublisher, quote_group, quote_payload
    from marketdata.live.types import Quote

    layer = RedisPubSubChannelLayer(hosts=[common.bench_redis_url()], prefix=PREFIX)
    publisher = ChannelLayerPublisher(layer)
    names = list(symbols)
    now_ms = int(time.time() * 1000)
    quotes = {
        s: Quote(iid, now_ms, 100.0, 100.0, 101.0, 99.0, 1000, previous_close=99.5, bid=99.9, ask=100.1)
        for s, iid in symbols.items()
    }
    groups = {s: quote_group(iid) for s, iid in symbols.items()}
    total = int(rate * duration)
    tick = 0.005
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
        next_at = t0 + (sent / rate)
        await asyncio.sleep(max(0.0, min(tick, next_at - loop.time())))
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
) -> dict:
    server = start_server(kind, f"fanout-{kind}", symbols)
    lg = LoadGenerators(
        name=f"fanout-{kind}",
        host="127.0.0.1",
        port=server.port,
        path=f"/ws?token={token}",
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
        cpu0 = _cpu_seconds(server.proc.pid)
        pub = await publish(symbols, rate=rate, duration=duration)
        cpu1 = _cpu_seconds(server.proc.pid)
        await asyncio.sleep(drain)
        cpu2 = _cpu_seconds(server.proc.pid)
        result = await lg.stop()
        figures = analyse(result, pub, clients)
        figures["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / pub["seconds"], 1)
        # CPU per delivered message: the cost figure that holds when the machine is shared
        figures["server_cpu_us_per_msg"] = round(1e6 * (cpu2 - cpu0) / max(figures["delivered"], 1), 2)
        return figures
    finally:
        await lg.kill()
        if spy is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(spy.wait(), 30)
        server.stop()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc)."""
    import os

    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


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


# --- main ------------------------------------------------------------------------------------------
async def amain(args, symbols: dict[str, int], token: str) -> None:
    quick = args.quick
    duration = args.duration or (5.0 if quick else 30.0)
    idle_n = args.idle or (2000 if quick else 10_000)
    kinds = args.servers.split(",")
    clients = spread(list(symbols), args.clients, 10)
    runs: dict[str, dict] = {}
    for kind in kinds:
        profile = str(common.DATA_DIR / f"fanout-{kind}.{args.profile}") if args.profile else None
        runs[kind] = await run_fanout(
            kind,
            symbols,
            clients,
            token=token,
            rate=args.rate,
            duration=duration,
            processes=4,
            drain=1.0 if quick else 2.0,
            profile=profile,
        )
        common.print_table(f"fanout {kind}", list(runs[kind].items()))
    # The same clients at a tenth of the load: where one core is not saturated (full mode only).
    light: dict[str, dict] = {}
    if not quick and args.light_rate:
        for kind in kinds:
            light[kind] = await run_fanout(
                kind,
                symbols,
                clients,
                token=token,
                rate=args.light_rate,
                duration=duration / 2,
                processes=4,
                drain=2.0,
            )
            common.print_table(f"fanout {kind} at {args.light_rate:g} updates/s", list(light[kind].items()))
    memory: dict[str, dict] = {}
    if not args.no_memory:
        for kind in kinds:
            memory[kind] = await idle_memory(
                kind, symbols, token=token, connections=idle_n, processes=4, settle=1.0 if quick else 2.0
            )
            common.print_table(f"idle memory {kind}", list(memory[kind].items()))

    ours = {k: v for k, v in runs.items() if k != "baseline"}
    base = runs.get("baseline", {})
    best = max(ours, key=lambda k: ours[k]["delivered_per_s"]) if ours else None
    ratio = common.ratio(ours[best]["delivered_per_s"], base.get("delivered_per_s", 0)) if best and base else None
    met = bool(
        best
        and ratio is not None
        and ratio >= 0.5
        and (ours[best]["latency_ms"]["p99"] or 1e9) <= 50
        and ours[best]["dropped_final_updates"] == 0
    )
    figures = dict(ours)
    figures["best_server"] = best
    for kind, mem in memory.items():
        if kind == "baseline":
            base["idle_memory"] = mem
        else:
            figures[kind]["idle_memory"] = mem
    for kind, run in light.items():
        (base if kind == "baseline" else figures[kind])[f"at_{args.light_rate:g}_updates_per_s"] = run
    common.write_result(
        "fanout",
        figures=figures,
        baseline=base,
        ratio=ratio,
        goal="p99 <= 50 ms, nothing dropped, delivered msgs/s >= 0.5 x baseline",
        met=met,
        quick=quick,
        notes=[
            f"{args.clients} clients in 4 load-generator processes, 10 of {SYMBOL_COUNT} symbols each "
            f"({args.clients * 10 // SYMBOL_COUNT} subscribers per symbol); {args.rate:g} updates/s for {duration:g} s",
            "server pinned to core 0; load generators and the publisher pinned to core 1 (same for the baseline)",
            "latency = client receive time_ns - publisher encode time_ns (same machine clock)",
            "dropped_final_updates = (client, symbol) pairs whose last published update never arrived; "
            "conflated = other missing updates (replaced by a newer one while the client was behind)",
            f"idle memory: server RSS before/after {idle_n} idle authenticated connections, 1 symbol each",
        ],
        extra={
            "config": {
                "clients": args.clients,
                "symbols": SYMBOL_COUNT,
                "per_client": 10,
                "rate": args.rate,
                "duration_s": duration,
                "idle_connections": idle_n,
            }
        },
    )


def main() -> None:
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--servers", default="daphne,uvicorn,baseline", help="comma list: daphne,uvicorn,baseline")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="updates per second (all symbols)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds of publishing (default 30, quick 5)")
    parser.add_argument(
        "--light-rate", type=float, default=200.0, help="second run at this rate, full mode only (0: none)"
    )
    parser.add_argument("--idle", type=int, default=0, help="idle connections for the memory figure")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--profile", choices=["svg", "txt"], help="py-spy profile of each server run (flame graph or collapsed stacks)"
    )
    args = parser.parse_args()
    raise_nofile()
    common.pin(common.LOAD_CORE)  # the publisher (this process) shares core 1 with the load generators
    common.setup_django()
    symbols = seed_symbols()
    token = common.access_token()
    asyncio.run(amain(args, symbols, token))


if __name__ == "__main__":
    main()
