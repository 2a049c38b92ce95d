"""What a benchmark reports: the machine it ran on, tables on stdout, ``bench/results/<name>.json``.

``write_result`` writes the figures, the baseline, the ratio and the goal with the CPU layout
and ``machine_info`` (cores, CPU, memory, Python, OS, package, PostgreSQL and Redis versions)
to ``bench/results/<name>[-quick].json`` and prints them with ``print_table``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.common import CPU_SHARING, RESULTS_DIR, ROOT
from bench.environment import bench_redis_url, database_params
from bench.procs import cores

PACKAGES = (
    "django",
    "djangorestframework",
    "djangorestframework-simplejwt",
    "channels",
    "channels-redis",
    "daphne",
    "twisted",
    "uvicorn",
    "uvloop",
    "httptools",
    "redis",
    "hiredis",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "orjson",
    "websockets",
    "aiohttp",
    "httpx",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def _service_version(cmd: list[str]) -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip().splitlines()[0]
    return "unknown"


def machine_info() -> dict:
    """Cores, CPU model, memory, Python, OS, package versions, PostgreSQL and Redis versions."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    redis_version = "unknown"
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(bench_redis_url())
        redis_version = client.info("server")["redis_version"]
        client.close()
    pg_version = "unknown"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(**database_params()) as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "cores": cores(),
        "cpu": model,
        "memory_mib": mem_kib // 1024,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "packages": package_versions(),
        "postgresql": pg_version,
        "redis": redis_version,
        "psql": _service_version(["psql", "--version"]),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
    }


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def print_table(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """A two-column table on stdout."""
    width = max((len(k) for k, _ in rows), default=10)
    print(f"\n== {title} ==")
    for key, value in rows:
        print(f"  {key:<{width}}  {_fmt(value)}")


def write_result(
    name: str,
    *,
    figures: dict,
    baseline: dict,
    ratio: float | None,
    goal: str,
    notes: Sequence[str] | str = (),
    met: bool | None = None,
    quick: bool = False,
    extra: dict | None = None,
) -> Path:
    """Write ``bench/results/<name>.json`` (figures, baseline, ratio, goal, machine) and print it.

    ``met`` defaults to ``ratio >= 0.5`` when a ratio is given; pass it explicitly for other goals.
    """
    if met is None and ratio is not None:
        met = ratio >= 0.5
    notes = [notes] if isinstance(notes, str) else list(notes)
    result = {
        "name": name,
        "quick": quick,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "figures": figures,
        "baseline": baseline,
        "ratio": ratio,
        "goal": goal,
        "met": met,
        "cpu_sharing": CPU_SHARING,
        "notes": notes,
        "machine": machine_info(),
        **(extra or {}),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    rows: list[tuple[str, object]] = [(f"ours.{k}", v) for k, v in figures.items()]
    rows += [(f"baseline.{k}", v) for k, v in baseline.items()]
    rows += [("ratio", ratio), ("goal", goal), ("met", met)]
    rows += [("note", n) for n in notes]
    print_table(f"{name}{' (quick)' if quick else ''} -> {path.relative_to(ROOT)}", rows)
    return path
