"""``python -m bench.fanout [--quick]``: live quotes from the channel layer to 1,000 WebSocket clients.

The real web server (daphne, then uvicorn, each on core 0, then ``uvicorn --workers 2``
allowed both cores, which it shares with the load side) with the Redis pub/sub channel
layer; 1,000 clients (4 load-generator processes x 250 connections, on core 1), each
subscribed to 10 of 100 symbols, so every symbol has 100 subscribers; a publisher (this
process, core 1) sends 2,000 quote updates per second (20 per symbol, one batch of 10 every
5 ms) for 30 s (quick: 5 s) through ``marketdata.live.protocol.ChannelLayerPublisher``, the
engine's own publisher, with
real quote payloads carrying ``sent_ns`` (``time.time_ns()`` when the update was encoded).

Reported per server: delivered messages per second, latency publish -> client receive
(p50, p99, max), and what did not arrive: ``missing`` = expected - delivered, where expected
is the sum over clients of the updates published to their symbols; ``dropped`` counts
(client, symbol) pairs whose final update never arrived (a real loss: conflation always
keeps the newest update), the rest of ``missing`` is conflation (an older pending update
replaced by a newer one, by design, for a client or server that falls behind).

CPU: ``server_cpu_percent`` and ``loadgen_cpu_percent`` (the 4 load generators and the
publisher, all on core 1) over the publishing window, percent of one core; a run whose load
side passed 85 % (``loadgen_saturated``) measured the clients and does not meet the goal.
Batched frames: our servers run the same load a second time with every client asking for
``?batch_ms=50`` (``--batch-ms``); ``batch_gain`` = deliveries per server CPU-second batched /
with one message per frame (goal >= 3).

Baseline: ``bench.ws_baseline``, a minimal ``websockets`` server reading the same Redis
pub/sub channels, same clients, same input, same run. Then memory per idle connection:
server RSS before and after opening 10,000 (quick: 2,000) authenticated connections
subscribed to one symbol each.

This module runs every server (ours and the baseline), compares ours with the baseline and
writes the report; the set-up, the publisher and one run's figures are ``bench.fanout_run``.
"""

from __future__ import annotations

import asyncio

from bench import common, environment, procs, report, stats, usage
from bench.fanout_run import SYMBOL_COUNT, idle_memory, run_fanout, seed_symbols, spread
from bench.wsclient import raise_nofile


# --- main ------------------------------------------------------------------------------------------
async def amain(args, symbols: dict[str, int], token: str) -> None:
    quick = args.quick
    duration = args.duration or (5.0 if quick else 30.0)
    idle_n = args.idle or (2000 if quick else 10_000)
    kinds = args.servers.split(",")
    clients = spread(list(symbols), args.clients, 10)
    results: dict[str, dict[str, dict]] = {}
    for name, servers, load, title in run_plan(args, kinds, duration):
        results[name] = {}
        for kind in servers:
            profiled = args.profile and name in ("runs", "batched")
            profile = str(common.DATA_DIR / f"fanout-{kind}-{name}.{args.profile}") if profiled else None
            run = await run_fanout(kind, symbols, clients, token=token, processes=4, profile=profile, **load)
            if name == "batched":
                run["batch_gain"] = batch_gain(run, results["runs"][kind])
            results[name][kind] = run
            report.print_table(title.format(kind=kind), list(run.items()))
    runs, batched, light = (results.get(name, {}) for name in ("runs", "batched", "light"))
    memory: dict[str, dict] = {}
    if not args.no_memory:
        for kind in kinds:
            memory[kind] = await idle_memory(
                kind, symbols, token=token, connections=idle_n, processes=4, settle=1.0 if quick else 2.0
            )
            report.print_table(f"idle memory {kind}", list(memory[kind].items()))

    ours = {k: v for k, v in runs.items() if k != "baseline"}
    base = runs.get("baseline", {})
    best = max(ours, key=lambda k: ours[k]["delivered_per_s"]) if ours else None
    ratio = stats.ratio(ours[best]["delivered_per_s"], base.get("delivered_per_s", 0)) if best and base else None
    # A run whose load generators saturated their core measured the clients, not the server.
    server_bound = bool(best and not ours[best]["loadgen_saturated"])
    goals = {
        "p99_50ms_nothing_lost_server_bound": bool(
            best
            and server_bound
            and (ours[best]["latency_ms"]["p99"] or 1e9) <= 50
            and ours[best]["dropped_final_updates"] == 0
        ),
    }
    if base:
        goals["ratio_0.5"] = bool(ratio is not None and ratio >= 0.5)
    gain = batched[best]["batch_gain"] if best in batched else None
    if args.batch_ms:
        goals["batch_gain_3"] = bool(
            gain is not None and gain >= 3 and not batched[best]["loadgen_saturated"] and server_bound
        )
    met = all(goals.values())
    figures = dict(ours)
    figures["best_server"] = best
    figures["server_bound"] = server_bound
    figures["batch_gain"] = gain
    figures["goals_met"] = goals
    for kind, run in batched.items():
        figures[kind]["batched"] = run
    for kind, mem in memory.items():
        if kind == "baseline":
            base["idle_memory"] = mem
        else:
            figures[kind]["idle_memory"] = mem
    for kind, run in light.items():
        (base if kind == "baseline" else figures[kind])[f"at_{args.light_rate:g}_updates_per_s"] = run
    report.write_result(
        "fanout",
        figures=figures,
        baseline=base,
        ratio=ratio,
        goal=(
            "p99 <= 50 ms, nothing dropped, server-bound (load generators below "
            f"{usage.LOADGEN_SATURATED_PCT:g} % of their core), delivered msgs/s >= 0.5 x baseline; "
            "batch_gain >= 3"
        ),
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
            "server_cpu_percent / loadgen_cpu_percent: percent of one core over the publishing window; the load "
            "side is the 4 load generators and the publisher, all on core 1; loadgen_saturated = above "
            f"{usage.LOADGEN_SATURATED_PCT:g} %: such a run is not counted as the server's limit",
            f"batch_gain = deliveries per server CPU-second with batch_ms={args.batch_ms} (one frame of pending "
            "messages per client at most every batch_ms) / with one message per frame, same load, same run",
            "server_bound = the best server's run did not saturate its load generators; core_busy_percent: each "
            "core's use by every process on the machine (other jobs included)",
        ],
        extra={
            "config": {
                "clients": args.clients,
                "symbols": SYMBOL_COUNT,
                "per_client": 10,
                "rate": args.rate,
                "duration_s": duration,
                "idle_connections": idle_n,
                "batch_ms": args.batch_ms,
            }
        },
    )


def run_plan(args, kinds: list[str], duration: float) -> list[tuple[str, list[str], dict, str]]:
    """The runs, in order: (results key, servers, load for ``run_fanout``, table title with ``{kind}``).

    Every server at the full rate; ours again with batched frames (deliveries per server
    CPU-second, batched / not); every server at a tenth of the load, where one core is not
    saturated (full mode only).
    """
    full = {"rate": args.rate, "duration": duration, "drain": 1.0 if args.quick else 2.0}
    plan = [("runs", kinds, full, "fanout {kind}")]
    if args.batch_ms:
        ours = [k for k in kinds if k != "baseline"]
        plan.append(
            ("batched", ours, {**full, "batch_ms": args.batch_ms}, f"fanout {{kind}}, batch_ms={args.batch_ms}")
        )
    if not args.quick and args.light_rate:
        light = {"rate": args.light_rate, "duration": duration / 2, "drain": 2.0}
        plan.append(("light", kinds, light, f"fanout {{kind}} at {args.light_rate:g} updates/s"))
    return plan


def batch_gain(batched: dict, single: dict) -> float | None:
    """Deliveries per server CPU-second with batched frames over one-message frames (same load)."""
    if not batched.get("deliveries_per_server_cpu_s") or not single.get("deliveries_per_server_cpu_s"):
        return None
    return round(batched["deliveries_per_server_cpu_s"] / single["deliveries_per_server_cpu_s"], 2)


def main() -> None:
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        default="daphne,uvicorn,uvicorn-2w,baseline",
        help="comma list: daphne,uvicorn,uvicorn-2w (uvicorn --workers 2),baseline",
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="updates per second (all symbols)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds of publishing (default 30, quick 5)")
    parser.add_argument(
        "--light-rate", type=float, default=200.0, help="second run at this rate, full mode only (0: none)"
    )
    parser.add_argument(
        "--batch-ms", type=int, default=50, help="second run of our servers with batched frames (0: none)"
    )
    parser.add_argument("--idle", type=int, default=0, help="idle connections for the memory figure")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--profile", choices=["svg", "txt"], help="py-spy profile of each server run (flame graph or collapsed stacks)"
    )
    args = parser.parse_args()
    raise_nofile()
    procs.pin(common.LOAD_CORE)  # the publisher (this process) shares core 1 with the load generators
    environment.setup_django()
    symbols = seed_symbols()
    token = environment.access_token()
    asyncio.run(amain(args, symbols, token))


if __name__ == "__main__":
    main()
