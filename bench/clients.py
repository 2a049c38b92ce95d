"""``python -m bench.clients [--quick]``: 10,000 live clients on one uvicorn process.

The real web server (uvicorn, the recommended one, on core 0) with the Redis pub/sub channel
layer; 10,000 WebSocket clients (quick: 2,000) in 4 load-generator processes on core 1, each
authenticated and subscribed to 10 of 1,000 symbols (100 subscribers per symbol; quick: 20);
a publisher (this process, core 1) sends 200 quote updates per second in total through the
engine's own channel-layer publisher for 30 s (quick: 10 s), so the server delivers about
20,000 updates per second (quick: 4,000).

Reported: clients connected and subscribed (and failed), how long that took, latency publish
-> client receive (p50, p99, max), missing / dropped final updates, the server's RSS before
the clients, once they are all subscribed, and after the load, ``rss_per_conn_kib`` (RSS
growth after the load / connected clients: connection, 10 subscriptions and whatever the
updates left behind), and the CPU of the server and of the load side (``bench.usage.CpuWindow``).

Goals (issue 17): all connected, p99 <= 100 ms, ``rss_per_conn_kib`` <= 25, load generators
below 85 % of their core (otherwise the run measured the clients).
"""

from __future__ import annotations

import asyncio
import time

from bench import common, environment, fanout_run, procs, report, usage
from bench.loadgen import LoadGenerators
from bench.wsclient import raise_nofile

SYMBOLS = 1000
PER_CLIENT = 10
GOAL_P99_MS = 100.0
GOAL_RSS_KIB = 25.0


async def run_clients(symbols: dict[str, int], *, token: str, clients_n: int, rate: float, duration: float) -> dict:
    """Connect ``clients_n`` clients, publish ``rate`` updates/s for ``duration`` s; the figures."""
    clients = fanout_run.spread(list(symbols), clients_n, PER_CLIENT)
    server = fanout_run.start_server("uvicorn", "clients-uvicorn", symbols)
    path = f"/ws?token={token}"
    try:
        # Warm-up: the first connections fill the process's caches and imports, not per-connection memory.
        warm = LoadGenerators(
            name="clients-warm", host="127.0.0.1", port=server.port, path=path, mode="idle", core=common.LOAD_CORE
        )
        await warm.start(clients[:20], processes=1)
        await warm.stop()
        await asyncio.sleep(1.0)
        rss_before = server.rss_kib()
        lg = LoadGenerators(
            name="clients", host="127.0.0.1", port=server.port, path=path, mode="fanout", core=common.LOAD_CORE
        )
        try:
            started = time.monotonic()
            await lg.start(clients, processes=4, within=600)
            connect_s = time.monotonic() - started
            await asyncio.sleep(2.0)
            rss_connected = server.rss_kib()
            await lg.mark()
            window = usage.CpuWindow(
                server={"server": server.proc.pid}, loadgen={**lg.pids(), "publisher": _self_pid()}
            ).start()
            pub = await fanout_run.publish(symbols, rate=rate, duration=duration)
            cpu = window.stop()
            await asyncio.sleep(2.0)
            await lg.settle(quiet=0.5, within=60.0)  # late updates are late, not lost
            rss_after = server.rss_kib()
            result = await lg.stop()
        finally:
            await lg.kill()
    finally:
        server.stop()
    figures = fanout_run.analyse(result, pub, clients)
    opened = max(result["opened"], 1)
    figures.update(
        {
            "asked": clients_n,
            "all_connected": result["opened"] == clients_n and result["failed"] == 0,
            "connect_subscribe_s": round(connect_s, 1),
            "rss_before_mib": round(rss_before / 1024, 1),
            "rss_connected_mib": round(rss_connected / 1024, 1),
            "rss_after_mib": round(rss_after / 1024, 1),
            "rss_per_conn_kib": round((rss_after - rss_before) / opened, 1),
            "rss_per_conn_kib_connected": round((rss_connected - rss_before) / opened, 1),
            **cpu,
        }
    )
    # Server CPU per delivered update over the publishing window (deliveries after it are few).
    server_cpu_s = cpu["server_cpu_percent"] / 100 * cpu["cpu_window_s"]
    figures["server_cpu_us_per_msg"] = round(1e6 * server_cpu_s / max(figures["delivered"], 1), 2)
    return figures


def _self_pid() -> int:
    import os

    return os.getpid()


async def amain(args, symbols: dict[str, int], token: str) -> None:
    quick = args.quick
    clients_n = args.clients or (2000 if quick else 10_000)
    duration = args.duration or (10.0 if quick else 30.0)
    figures = await run_clients(symbols, token=token, clients_n=clients_n, rate=args.rate, duration=duration)
    p99 = figures["latency_ms"]["p99"]
    goals = {
        "all_connected": figures["all_connected"],
        "p99_100ms": p99 is not None and p99 <= GOAL_P99_MS and figures["dropped_final_updates"] == 0,
        "rss_per_conn_25kib": figures["rss_per_conn_kib"] <= GOAL_RSS_KIB,
        "server_measured": not figures["loadgen_saturated"],
    }
    figures["goals_met"] = goals
    report.write_result(
        "clients",
        figures=figures,
        baseline={},
        ratio=None,
        goal=(
            f"all connected, p99 <= {GOAL_P99_MS:g} ms with no final price lost, rss_per_conn_kib <= "
            f"{GOAL_RSS_KIB:g}, load generators below {usage.LOADGEN_SATURATED_PCT:g} % of their core"
        ),
        met=all(goals.values()),
        quick=quick,
        notes=[
            f"uvicorn, {clients_n} clients in 4 load-generator processes, {PER_CLIENT} of {len(symbols)} symbols "
            f"each ({clients_n * PER_CLIENT // len(symbols)} subscribers per symbol); {args.rate:g} updates/s in "
            f"total for {duration:g} s",
            "server pinned to core 0; load generators and the publisher pinned to core 1",
            "latency = client receive time_ns - publisher encode time_ns (same machine clock)",
            "rss_per_conn_kib = (server RSS 2 s after the load - RSS after a 20-client warm-up) / clients connected; "
            "rss_per_conn_kib_connected: the same once all are subscribed, before the load",
            "server_cpu_percent / loadgen_cpu_percent: percent of one core over the publishing window",
        ],
        extra={
            "config": {
                "clients": clients_n,
                "symbols": len(symbols),
                "per_client": PER_CLIENT,
                "rate": args.rate,
                "duration_s": duration,
            }
        },
    )


def main() -> None:
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=0, help="WebSocket clients (default 10000, quick 2000)")
    parser.add_argument("--rate", type=float, default=200.0, help="updates per second, all symbols")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds of publishing (default 30, quick 10)")
    args = parser.parse_args()
    raise_nofile()  # the server inherits the raised limit: 10,000 sockets need more than 1024
    procs.pin(common.LOAD_CORE)  # the publisher (this process) shares core 1 with the load generators
    environment.setup_django()
    symbols = fanout_run.seed_symbols(SYMBOLS)
    token = environment.access_token()
    asyncio.run(amain(args, symbols, token))


if __name__ == "__main__":
    main()
