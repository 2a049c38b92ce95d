"""Benchmark ``history``: ``GET /marketdata/intraday`` (one session of 1m bars) and
``GET /marketdata/daily`` (one year) on the real web server, at concurrency 16.

Ours: ``marketapp.asgi:application`` with the committed settings, DEBUG off, whose fast
history route answers these GETs (and, with ``HISTORY_FAST_ROUTE=false``, Django + DRF do),
served by daphne (and by uvicorn in the full run), one process on core 0.
Baseline, same run and same server: ``bench.history_baseline:app``, a raw ASGI app running
the same SQL with one psycopg async connection and orjson, no Django, no auth.
The load generator (``bench.httpload``, raw asyncio HTTP/1.1 keep-alive, 16 connections)
runs in its own process on core 1; it sends a JWT ``Authorization`` header to both.

Seeded: NSE instrument HIST0001 with 375 one-minute bars on 2024-01-15 (09:15-15:30 IST) and
the weekday daily bars of the year up to that day.

``python -m bench.history [--quick]``: 20 s per endpoint and app (quick: 5 s, daphne only).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import urllib.request
from pathlib import Path

from bench import common, environment, procs, report, stats

GOAL = 0.5
CONCURRENCY = 16
SESSION_DAY = dt.date(2024, 1, 15)
SESSION_OPEN_UTC = dt.datetime(2024, 1, 15, 3, 45, tzinfo=dt.UTC)  # 09:15 IST
SESSION_MINUTES = 375
SYMBOL = "HIST0001"
ENDPOINTS = {
    "intraday": f"/marketdata/intraday?symbol={SYMBOL}&exchange=NSE&start_date={SESSION_DAY}&end_date={SESSION_DAY}",
    "daily": (
        f"/marketdata/daily?symbol={SYMBOL}&exchange=NSE"
        f"&start_date={SESSION_DAY - dt.timedelta(days=364)}&end_date={SESSION_DAY}"
    ),
}
# name -> (ASGI app, extra environment). "ours" is the committed default settings: the fast
# history route in front of Django answers these GETs (marketdata/api/history_route.py);
# "ours_django" turns the route off (HISTORY_FAST_ROUTE=false), so Django and DRF answer (full
# runs only).
APPS = {
    "ours": ("marketapp.asgi:application", {}),
    "ours_django": ("marketapp.asgi:application", {"HISTORY_FAST_ROUTE": "false"}),
    "baseline": ("bench.history_baseline:app", {}),
}


FIELDS = ("req_per_s", "p50_ms", "p99_ms", "max_ms", "requests", "server_cpu_ms_per_req")
# The framework floor (bench/floor.py): the same server answering "{}" with no work.
FLOORS = {
    "django_view": ("marketapp.asgi:application", {"DJANGO_SETTINGS_MODULE": "bench.floor_settings"}, "/floor/django"),
    "drf_jwt_view": ("marketapp.asgi:application", {"DJANGO_SETTINGS_MODULE": "bench.floor_settings"}, "/floor/drf"),
    "raw_asgi": ("bench.history_baseline:app", {}, "/floor"),
}


def seed() -> dict[str, int]:
    """The instrument's session of 1m bars and year of daily bars (replaced on every run)."""
    from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

    (instrument,) = environment.bench_instruments(1, prefix="HIST")
    PriceHistoryIntraday.objects.filter(instrument=instrument).delete()
    PriceHistoryDaily.objects.filter(instrument=instrument).delete()
    minutes = [
        PriceHistoryIntraday(
            instrument=instrument,
            timestamp=SESSION_OPEN_UTC + dt.timedelta(minutes=m),
            interval="1m",
            open=2500 + m * 0.1,
            high=2500.5 + m * 0.1,
            low=2499.5 + m * 0.1,
            close=2500.2 + m * 0.1,
            volume=1000 + m,
            trade_count=10,
        )
        for m in range(SESSION_MINUTES)
    ]
    PriceHistoryIntraday.objects.bulk_create(minutes)
    days = []
    day = SESSION_DAY - dt.timedelta(days=364)
    close = 2400.0
    while day <= SESSION_DAY:
        if day.weekday() < 5:
            days.append(
                PriceHistoryDaily(
                    instrument=instrument,
                    date=day,
                    open=close,
                    high=close + 20,
                    low=close - 20,
                    close=close + 1,
                    volume=1_000_000,
                    previous_close=close,
                    adj_close=close + 1,
                    delivery_percentage=45.5,
                )
            )
            close += 1
        day += dt.timedelta(days=1)
    PriceHistoryDaily.objects.bulk_create(days)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE marketdata_pricehistoryintraday")
        cursor.execute("ANALYZE marketdata_pricehistorydaily")
    return {"intraday": len(minutes), "daily": len(days)}


def _get(port: int, path: str, token: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def load(port: int, path: str, token: str, *, duration: float, warmup: float) -> dict:
    """The load generator in its own process on the load core; its JSON result."""
    cmd = [
        *procs.taskset_prefix(common.LOAD_CORE),
        common.PYTHON,
        "-m",
        "bench.httpload",
        "--port",
        str(port),
        "--path",
        path,
        "--header",
        f"Authorization: Bearer {token}",
        "--concurrency",
        str(CONCURRENCY),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=common.ROOT, env=environment.bench_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load_with_cpu(server: procs.Process, path: str, token: str, *, duration: float, warmup: float) -> dict:
    """``load`` plus the server's CPU per request over the whole run (warm-up included)."""
    before = _cpu_s(server.proc.pid)
    result = load(server.port, path, token, duration=duration, warmup=warmup)
    spent = _cpu_s(server.proc.pid) - before
    done = result["requests"] * (duration + warmup) / duration  # requests of the whole run, about
    result["server_cpu_ms_per_req"] = round(1000 * spent / max(done, 1), 3)
    return result


def measure(kind: str, app_name: str, token: str, expected: dict[str, int], *, duration: float, warmup: float) -> dict:
    """One server process of ``kind`` serving one app; both endpoints measured in turn."""
    app, env = APPS[app_name]
    server = procs.server(kind, f"history-{kind}-{app_name}", app, **env)
    with server:
        results = {}
        for endpoint, path in ENDPOINTS.items():
            body = _get(server.port, path, token)  # also warms the process up
            assert len(body["results"]) == expected[endpoint], (app_name, endpoint, len(body["results"]))
            result = _load_with_cpu(server, path, token, duration=duration, warmup=warmup)
            assert result["non_200"] == 0, (app_name, endpoint, result)
            result["server_rss_kib"] = server.rss_kib()
            results[endpoint] = result
    return results


def measure_floors(kind: str, token: str, *, duration: float, warmup: float) -> dict:
    """Each framework floor on its own server process of ``kind``."""
    out = {}
    for name, (app, env, path) in FLOORS.items():
        with procs.server(kind, f"history-{kind}-floor-{name}", app, **env) as server:
            _get(server.port, path, token)
            result = _load_with_cpu(server, path, token, duration=duration, warmup=warmup)
            assert result["non_200"] == 0, (name, result)
            out[name] = {k: result[k] for k in FIELDS}
    return out


def run(*, quick: bool) -> dict:
    environment.setup_django()
    expected = seed()
    token = environment.access_token()
    duration, warmup = (4.0, 0.5) if quick else (20.0, 2.0)
    kinds = ["daphne"] if quick else ["daphne", "uvicorn"]

    figures: dict = {"concurrency": CONCURRENCY, "duration_s": duration, "rows": expected}
    baseline: dict = {}
    ratios: dict[str, float] = {}
    for kind in kinds:
        names = [name for name in APPS if not (quick and name == "ours_django")]
        measured = {name: measure(kind, name, token, expected, duration=duration, warmup=warmup) for name in names}
        base = measured.pop("baseline")
        for endpoint in ENDPOINTS:
            b = base[endpoint]
            baseline[f"{kind}.{endpoint}"] = {k: b[k] for k in FIELDS}
            for name, results in measured.items():
                o = results[endpoint]
                key = f"{kind}.{endpoint}.{name}"
                figures[key] = {k: o[k] for k in FIELDS}
                ratios[key] = figures[key]["ratio"] = stats.ratio(o["req_per_s"], b["req_per_s"])
        if not quick:
            for name, floor in measure_floors(kind, token, duration=duration / 2, warmup=warmup).items():
                figures[f"{kind}.floor.{name}"] = floor
    headline = min(ratios[f"daphne.{e}.ours"] for e in ENDPOINTS)
    on_django = [ratios[f"daphne.{e}.ours_django"] for e in ENDPOINTS if f"daphne.{e}.ours_django" in ratios]
    report.write_result(
        "history",
        figures=figures,
        baseline=baseline,
        ratio=headline,
        goal=f"ratio >= {GOAL} (requests per second, each endpoint)",
        met=all(r >= GOAL for k, r in ratios.items() if k.endswith(".ours")),
        quick=quick,
        notes=[
            "ratio = the lower of the two endpoints' req/s ratios of ours on daphne, committed default settings",
            "ours: marketapp.asgi:application, whose fast history route answers these GETs (JWT checked, "
            "same SQL on an async psycopg pool, orjson); baseline: raw ASGI app, same SQL, psycopg + orjson, no auth",
            "ours_django: the same with HISTORY_FAST_ROUTE=false: Django + DRF + JWT auth + permissions (full runs)",
            "floor.*: the same server answering {} with no work: a plain Django view, a DRF view with the JWT "
            "auth and permission (project middleware), the raw ASGI app (full runs only)",
            f"server (one process) on core {common.SERVER_CORE}; load generator on core {common.LOAD_CORE}; "
            "PostgreSQL unpinned",
        ],
        extra={"ratio_committed_settings": headline, "ratio_django_path": min(on_django) if on_django else None},
    )
    return {"ratio": headline, "ratio_committed_settings": headline, **ratios}


def main() -> None:
    args = common.arg_parser(__doc__.splitlines()[0]).parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
