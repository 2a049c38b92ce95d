"""``python -m bench.pubsub [--quick]``: the hub's Redis pub/sub client, hand-written RESP vs redis-py.

The load of ``bench.fanout`` through its own machinery (``bench.fanout_run.run_fanout``): the real
web server (uvicorn on core 0) with the Redis pub/sub channel layer, 1,000 clients (4
load-generator processes on core 1) each subscribed to 10 of 100 symbols, 2,000 quote
updates/s for 30 s (quick: 200 clients, 500 updates/s, 5 s). The server runs once with
``LIVE_PUBSUB_CLIENT=resp`` (the hub's hand-written RESP client) and once with
``LIVE_PUBSUB_CLIENT=redis-py`` (redis-py's asyncio ``PubSub``, hiredis parser), alternating,
``--rounds`` times each, in the same run. Full mode then runs each client once more at a tenth
of the load (200 updates/s), where one core is not saturated and the latency is the reader's.

Reported per client (median over the rounds, each round too): delivered msgs/s, latency
publish -> client receive p50 / p99, server CPU per delivered message; and redis-py / RESP
ratios. The rule (the issue): the hand-written client stays only if redis-py costs more than
about 10 % of the fan-out throughput or p99 at the full load.
"""

from __future__ import annotations

import asyncio
import os
import statistics

from bench import common, environment, fanout_run, procs, report
from bench.wsclient import raise_nofile

CLIENTS = ("resp", "redis-py")
SETTING = "LIVE_PUBSUB_CLIENT"
TOLERANCE = 0.10


def _pick(run: dict) -> dict:
    return {
        "delivered_per_s": run["delivered_per_s"],
        "p50_ms": run["latency_ms"]["p50"],
        "p99_ms": run["latency_ms"]["p99"],
        "cpu_us_per_msg": run["server_cpu_us_per_msg"],
        "server_cpu_percent": run["server_cpu_percent"],
        "loadgen_cpu_percent": run["loadgen_cpu_percent"],
        "loadgen_saturated": run["loadgen_saturated"],
        "missing_pct": run["missing_pct"],
        "dropped_final_updates": run["dropped_final_updates"],
        "failed_connections": run["failed_connections"],
    }


def _median(rounds: list[dict]) -> dict:
    keys = (
        "delivered_per_s",
        "p50_ms",
        "p99_ms",
        "cpu_us_per_msg",
        "server_cpu_percent",
        "loadgen_cpu_percent",
        "missing_pct",
    )
    out = {k: round(statistics.median(r[k] for r in rounds if r[k] is not None), 2) for k in keys}
    out["dropped_final_updates"] = max(r["dropped_final_updates"] for r in rounds)
    out["loadgen_saturated"] = any(r["loadgen_saturated"] for r in rounds)
    out["rounds"] = rounds
    return out


def _ratios(ours: dict, theirs: dict) -> dict:
    """redis-py / RESP for each figure (throughput above 1 is better, the others below 1)."""

    def div(a, b):
        return round(a / b, 3) if a and b else None

    return {
        "delivered_per_s": div(theirs["delivered_per_s"], ours["delivered_per_s"]),
        "p50_ms": div(theirs["p50_ms"], ours["p50_ms"]),
        "p99_ms": div(theirs["p99_ms"], ours["p99_ms"]),
        "cpu_us_per_msg": div(theirs["cpu_us_per_msg"], ours["cpu_us_per_msg"]),
    }


async def _measure(kind: str, client: str, symbols: dict, clients: list, *, token: str, **load) -> dict:
    os.environ[SETTING] = client  # start_server passes this process's environment to the server
    try:
        run = await fanout_run.run_fanout(kind, symbols, clients, token=token, processes=4, **load)
    finally:
        os.environ.pop(SETTING, None)
    figures = _pick(run)
    report.print_table(f"pubsub {client} ({load['rate']:g} updates/s)", list(figures.items()))
    return figures


async def amain(args, symbols: dict[str, int], token: str) -> None:
    quick = args.quick
    clients_n = args.clients or (200 if quick else 1000)
    rate = args.rate or (500.0 if quick else 2000.0)
    duration = args.duration or (5.0 if quick else 30.0)
    rounds = args.rounds or (1 if quick else 2)
    clients = fanout_run.spread(list(symbols), clients_n, 10)
    load = {"rate": rate, "duration": duration, "drain": 1.0 if quick else 2.0}
    runs: dict[str, list[dict]] = {c: [] for c in CLIENTS}
    for i in range(rounds):
        order = CLIENTS if i % 2 == 0 else CLIENTS[::-1]  # alternate who goes first
        for client in order:
            runs[client].append(await _measure(args.server, client, symbols, clients, token=token, **load))
    full = {c: _median(r) for c, r in runs.items()}
    ratios = _ratios(full["resp"], full["redis-py"])
    light: dict[str, dict] = {}
    if not quick and args.light_rate:
        light_load = {"rate": args.light_rate, "duration": duration / 2, "drain": 2.0}
        for client in CLIENTS:
            light[client] = await _measure(args.server, client, symbols, clients, token=token, **light_load)
    light_ratios = _ratios(light["resp"], light["redis-py"]) if light else {}

    throughput_ok = (ratios["delivered_per_s"] or 0) >= 1 - TOLERANCE
    p99_ok = (ratios["p99_ms"] or 1e9) <= 1 + TOLERANCE
    keep = "redis-py" if throughput_ok and p99_ok else "resp"
    figures = {"redis-py": full["redis-py"], "ratios_redis_py_over_resp": ratios, "keep": keep}
    baseline = {"resp": full["resp"]}
    if light:
        figures[f"at_{args.light_rate:g}_updates_per_s"] = {**light, "ratios_redis_py_over_resp": light_ratios}
    report.write_result(
        "pubsub",
        figures=figures,
        baseline=baseline,
        ratio=ratios["delivered_per_s"],
        goal="redis-py within 10 % of the hand-written RESP client: delivered msgs/s ratio >= 0.9 and p99 ratio <= 1.1",
        met=keep == "redis-py",
        quick=quick,
        notes=[
            f"bench.fanout's load on {args.server}: {clients_n} clients in 4 load-generator processes, 10 of "
            f"{fanout_run.SYMBOL_COUNT} symbols each; {rate:g} updates/s for {duration:g} s; {rounds} round(s) per "
            "client, alternating; figures are the median over the rounds",
            f"{SETTING}=resp: the hub's hand-written RESP2 client; {SETTING}=redis-py: redis.asyncio PubSub "
            "(hiredis parser when hiredis is installed, see machine.packages)",
            "ratios are redis-py / resp: delivered_per_s above 1 favours redis-py, the others below 1",
            "cpu_us_per_msg = server CPU (publishing and draining) / delivered messages",
        ],
        extra={"config": {"server": args.server, "clients": clients_n, "rate": rate, "duration_s": duration}},
    )


def main() -> None:
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--server", default="uvicorn", choices=["uvicorn", "daphne"])
    parser.add_argument("--clients", type=int, default=0, help="WebSocket clients (default 1000, quick 200)")
    parser.add_argument("--rate", type=float, default=0.0, help="updates per second (default 2000, quick 500)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds of publishing (default 30, quick 5)")
    parser.add_argument("--rounds", type=int, default=0, help="runs per client (default 2, quick 1)")
    parser.add_argument("--light-rate", type=float, default=200.0, help="one more run each at this rate, full mode")
    args = parser.parse_args()
    raise_nofile()
    procs.pin(common.LOAD_CORE)  # the publisher (this process) shares core 1 with the load generators
    environment.setup_django()
    symbols = fanout_run.seed_symbols()
    token = environment.access_token()
    asyncio.run(amain(args, symbols, token))


if __name__ == "__main__":
    main()
