"""``python -m bench.e2e [--quick]``: a Dhan quote packet's way to a browser, end to end.

A local fake Dhan feed (``ingestion.tests.fakes.dhan_server.FakeDhanServer``, the real v2
wire format) sends quote packets at 5,000 per second spread over 100 instruments to the real
``manage.py ingest --provider BDHAN`` process (a Provider row of kind ``dhan`` whose
``feed_url`` points at the fake, with credentials set), which normalizes them, writes the
tick store, aggregates bars and publishes through the Redis pub/sub channel layer to the
real web server (uvicorn, or ``--server daphne``), which fans out to 100 WebSocket clients
subscribed to 10 of the 100 symbols each (10 subscribers per symbol).

Latency is from the moment the fake hands a packet to its socket to the moment a client
reads the update. Dhan's LTT has whole seconds only, so the fake encodes a per-instrument
sequence number in the price (LTP = 1000 + seq / 100) and records its send time per
(security id, seq); a client's ``close`` gives the seq back. The engine publishes once per
batch per instrument, so a client sees the newest price of a batch: each received update is
timed from the send of the packet that carried that price.

CPU: the measured pipeline (ingest process and web server) on core 0; the fake feed (this
process) and the load generator on core 1. Recorded over the feed's window: ``ingest_cpu_percent``,
``server_cpu_percent`` (the web server) and ``loadgen_cpu_percent`` (load generator and fake
feed); a run whose load side passed 85 % of its core (``loadgen_saturated``) is not met.

Full mode adds a second, shorter run with one subscription per client (5,000 deliveries/s
instead of ~50,000): the pipeline's own latency when the web server is not saturated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import numpy as np

from bench import common, environment, procs, report, usage
from bench.fanout_run import seed_symbols, spread
from bench.loadgen import LoadGenerators
from bench.wsclient import raise_nofile

PREFIX = "marketapp-bench-e2e"
PROVIDER = "BDHAN"
TOKEN = "bench-dhan-token"  # noqa: S105 - the fake feed's token
CLIENT_ID = "1000000001"
BASE_SECURITY_ID = 900_000
IST_OFFSET_S = 19800


def seed_provider(symbols: dict[str, int], feed_url: str) -> dict[str, int]:
    """The BDHAN provider row pointed at the fake, mapped to the bench instruments; ``{symbol: security id}``."""
    from exchanges.models import Exchange
    from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping

    provider, _ = Provider.objects.update_or_create(
        code=PROVIDER,
        defaults={
            "name": "Dhan (benchmark fake)",
            "kind": Provider.Kind.DHAN,
            "settings": {"feed_url": feed_url, "mode": "quote", "backoff_base_s": 0.2},
            "credentials": {"access_token": TOKEN, "client_id": CLIENT_ID},
            "is_active": True,
        },
    )
    exchange = Exchange.objects.get(code="BENCHWS")
    ExchangeProviderMapping.objects.update_or_create(
        exchange=exchange, provider=provider, defaults={"is_primary": True, "priority": 1, "is_active": True}
    )
    out = {}
    for i, (symbol, iid) in enumerate(sorted(symbols.items())):
        sid = BASE_SECURITY_ID + i
        ProviderInstrumentMapping.objects.update_or_create(
            provider=provider,
            instrument_id=iid,
            defaults={"search_code": str(sid), "segment": "NSE_EQ", "is_active": True},
        )
        out[symbol] = sid
    return out


async def feed(server, security_ids: list[int], *, rate: float, duration: float) -> tuple[dict, float]:
    """Send ``rate`` quote packets/s round-robin over ``security_ids``; returns ({(sid, seq): sent ns}, seconds)."""
    from ingestion.tests.fakes.dhan_server import quote_packet

    sent: dict[tuple[int, int], int] = {}
    seqs = dict.fromkeys(security_ids, 0)
    conn = server.open_connections()[0]
    total = int(rate * duration)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    n = 0
    while n < total:
        target = min(total, int((loop.time() - t0) * rate) + 1)
        while n < target:
            sid = security_ids[n % len(security_ids)]
            seq = seqs[sid] = seqs[sid] + 1
            price = 1000.0 + seq / 100
            packet = quote_packet(
                "NSE_EQ",
                sid,
                ltp=price,
                ltq=10,
                ltt=int(time.time()) + IST_OFFSET_S,
                avg_price=price,
                volume=seq * 10,
                open=1000.0,
                close=999.0,
                high=price,
                low=1000.0,
            )
            sent[(sid, seq)] = time.time_ns()
            await conn.ws.send(packet)
            n += 1
        await asyncio.sleep(max(0.0, min(0.002, t0 + n / rate - loop.time())))
    return sent, loop.time() - t0


async def run_e2e(args, symbols: dict[str, int], token: str, *, per_client: int, duration: float) -> dict:
    """One run: fake feed -> ingest -> Redis -> web server -> clients; returns the figures."""
    from ingestion.tests.fakes.dhan_server import FakeDhanServer

    quick = args.quick
    clients = spread(list(symbols), args.clients, per_client)
    async with FakeDhanServer(token=TOKEN, client_id=CLIENT_ID) as fake:
        sids = await asyncio.to_thread(seed_provider, symbols, fake.url)
        ingest = procs.Process(
            name="e2e-ingest",
            cmd=[common.PYTHON, "manage.py", "ingest", "--provider", PROVIDER],
            # The fake feed is a local host: the deployment allow-list admits it (not the default).
            env=environment.bench_env(CHANNEL_LAYER_PREFIX=PREFIX, PROVIDER_URL_ALLOWED_HOSTS="127.0.0.1"),
            core=None if args.ingest_core < 0 else args.ingest_core,
        ).start()
        web = procs.server(args.server, f"e2e-{args.server}", CHANNEL_LAYER_PREFIX=PREFIX).start()
        lg = LoadGenerators(
            name="e2e",
            host="127.0.0.1",
            port=web.port,
            path=f"/ws?token={token}",
            mode="e2e",
            core=common.LOAD_CORE,
        )
        try:
            await fake.wait_for(lambda: fake.subscribed_count() >= len(symbols), within=60)
            await lg.start(clients, processes=1)
            # Warm-up: one packet per instrument gives every engine structure its first entry.
            await feed(fake, list(sids.values()), rate=2000, duration=len(sids) / 2000)
            await asyncio.sleep(0.5)
            await lg.mark()
            # The fake feed (this process) shares core 1 with the load generator: both are the load side.
            window = usage.CpuWindow(
                server={"web": web.proc.pid}, loadgen={**lg.pids(), "fake_feed": os.getpid()}
            ).start()
            ingest0 = usage.cpu_seconds(ingest.proc.pid)
            sent, seconds = await feed(fake, list(sids.values()), rate=args.rate, duration=duration)
            ingest1 = usage.cpu_seconds(ingest.proc.pid)
            cpu = window.stop()
            await asyncio.sleep(1.0 if quick else 2.0)
            result = await lg.stop()
        finally:
            await lg.kill()
            web.stop()
            ingest.stop()

    latencies = []
    unmatched = 0
    newest: dict[tuple[int, str], int] = {}  # (client, symbol) -> newest feed seq received
    for recv_ns, client, symbol, close in result["e2e"]:
        seq = round((float(close) - 1000.0) * 100)
        at = sent.get((sids.get(symbol), seq))
        if at is None:
            unmatched += 1
            continue
        latencies.append(recv_ns - at)
        if seq > newest.get((client, symbol), 0):
            newest[(client, symbol)] = seq
    final: dict[int, int] = {}
    for sid, seq in sent:
        final[sid] = max(final.get(sid, 0), seq)
    missed_final = sum(
        1
        for client, syms in enumerate(clients[: result["opened"]])
        for s in syms
        if newest.get((client, s), 0) < final.get(sids[s], 0)
    )
    lat = np.sort(np.array(latencies, dtype=np.int64)) / 1e6
    figures = {
        "server": args.server,
        "clients": result["opened"],
        "subscriptions_per_client": per_client,
        "packets_sent": len(sent),
        "packet_rate": round(len(sent) / seconds, 1),
        "updates_delivered": len(latencies),
        "updates_delivered_per_s": round(len(latencies) / seconds, 1),
        "unmatched": unmatched,
        "clients_missing_final_price": missed_final,
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p90": round(float(np.percentile(lat, 90)), 2) if lat.size else None,
            "p99": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
            "max": round(float(lat[-1]), 2) if lat.size else None,
        },
        "ingest_cpu_percent": round(100 * (ingest1 - ingest0) / seconds, 1),
        **cpu,
        "errors": result["errors"][:5],
    }
    return figures


async def amain(args, symbols: dict[str, int], token: str) -> None:
    quick = args.quick
    duration = args.duration or (3.0 if quick else 30.0)
    figures = await run_e2e(args, symbols, token, per_client=args.per_client, duration=duration)
    report.print_table("e2e", list(figures.items()))
    light = None
    if not quick and args.light_per_client:
        # The same feed with fewer deliveries: the pipeline's own latency, web server not saturated.
        light = await run_e2e(args, symbols, token, per_client=args.light_per_client, duration=duration / 3)
        figures[f"at_{args.light_per_client}_subscriptions_per_client"] = light
        report.print_table(f"e2e, {args.light_per_client} subscription(s) per client", list(light.items()))
    p99 = figures["latency_ms"]["p99"]
    met = bool(
        p99 is not None
        and p99 <= 25
        and figures["clients_missing_final_price"] == 0
        and not figures["loadgen_saturated"]
    )
    report.write_result(
        "e2e",
        figures=figures,
        baseline={},
        ratio=None,
        goal="p99 <= 25 ms (packet sent by the feed -> update read by a client)",
        met=met,
        quick=quick,
        notes=[
            f"fake Dhan feed -> manage.py ingest --provider {PROVIDER} -> Redis pub/sub -> {args.server} -> "
            f"{args.clients} clients x {args.per_client} of {len(symbols)} symbols; {args.rate:g} packets/s for "
            f"{duration:g} s",
            "ingest process and web server pinned to core 0; fake feed and load generator pinned to core 1",
            "the engine publishes one update per instrument per batch, so not every packet becomes an update; "
            "each update is timed from the send of the packet whose price it carries",
            "clients_missing_final_price = (client, symbol) pairs whose last price never arrived",
            "server_cpu_percent = the web server; loadgen_cpu_percent = the load generator and the fake feed "
            f"(core 1), percent of one core; loadgen_saturated (above {usage.LOADGEN_SATURATED_PCT:g} %): the run "
            "measured the clients, not the server, and does not count as met",
        ],
        extra={
            "config": {
                "rate": args.rate,
                "duration_s": duration,
                "clients": args.clients,
                "per_client": args.per_client,
                "instruments": len(symbols),
            }
        },
    )


def main() -> None:
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument(
        "--light-per-client", type=int, default=1, help="second run with this many subscriptions, full mode only"
    )
    parser.add_argument("--rate", type=float, default=5000.0, help="quote packets per second")
    parser.add_argument(
        "--ingest-core", type=int, default=common.SERVER_CORE, help="core for the ingest process (-1: unpinned)"
    )
    parser.add_argument("--duration", type=float, default=0.0, help="seconds of feed (default 30, quick 3)")
    args = parser.parse_args()
    raise_nofile()
    procs.pin(common.LOAD_CORE)
    environment.setup_django()
    symbols = seed_symbols()
    token = environment.access_token()
    asyncio.run(amain(args, symbols, token))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
