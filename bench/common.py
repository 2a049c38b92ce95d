"""The shared benchmark harness: the bench database and Redis, processes, CPU pinning, figures.

Every benchmark (``python -m bench.<name> [--quick]``) works on its OWN PostgreSQL database
(``marketapp_bench`` on the server of ``DATABASE_URL``) and its own Redis database number
(``BENCH_REDIS_DB``, default 7, flushed at start), never on the development or test data.

CPU on this 2-core machine: whatever is measured (the server, or the engine in-process) runs
on ``SERVER_CORE`` (0); load generators and baselines' clients run on ``LOAD_CORE`` (1).
PostgreSQL and Redis are not pinned (they are shared services); results say so.

Typical use::

    from bench import common
    common.setup_django()            # env, database, migrate, seed_reference, Redis flush
    ...
    common.write_result("ingest", figures={...}, baseline={...}, ratio=0.8, goal=">= 0.5", notes=[...])
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DATA_DIR = RESULTS_DIR / "data"
PYTHON = sys.executable

BENCH_DB_NAME = os.environ.get("BENCH_DB_NAME", "marketapp_bench")
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "7"))
SERVER_CORE = 0
LOAD_CORE = 1
CPU_SHARING = (
    f"measured process pinned to core {SERVER_CORE}, load generator / baseline client pinned to core "
    f"{LOAD_CORE}; PostgreSQL and Redis unpinned (shared by both cores); same pinning for ours and the baseline"
)

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


# --- environment, database, Redis -----------------------------------------------------------
def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def bench_database_url() -> str:
    """``DATABASE_URL`` (or the local default) pointed at the bench database."""
    base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketapp"
    )
    if os.environ.get("BENCH_DATABASE_URL"):
        return base
    return _with_path(base, "/" + BENCH_DB_NAME)


def bench_redis_url() -> str:
    """``REDIS_URL`` (or the local default) pointed at the bench Redis database number."""
    if os.environ.get("BENCH_REDIS_URL"):
        return os.environ["BENCH_REDIS_URL"]
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return _with_path(base, f"/{BENCH_REDIS_DB}")


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for the bench process and every server it starts (production-like)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=bench_database_url(),
        REDIS_URL=bench_redis_url(),
        DJANGO_SETTINGS_MODULE="marketapp.settings",
        DEBUG="false",  # DEBUG keeps every SQL query in memory and adds checks: never benchmark it
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdef"),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        CHANNEL_LAYER_PREFIX="marketapp-bench",  # pub/sub ignores db numbers: keep off other runs
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def database_params(url: str | None = None) -> dict:
    """psycopg connection keywords for a postgres:// URL."""
    parts = urlsplit(url or bench_database_url())
    params = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432, "dbname": parts.path.lstrip("/")}
    if parts.username:
        params["user"] = parts.username
    if parts.password:
        params["password"] = parts.password
    return params


def psql_conninfo(url: str | None = None) -> str:
    """A libpq conninfo string (for psql and psycopg.connect)."""
    return " ".join(f"{k}={v}" for k, v in database_params(url).items())


def ensure_database() -> None:
    """Create the bench database when missing (connecting to the ``postgres`` maintenance db)."""
    import psycopg

    params = database_params()
    name = params["dbname"]
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis() -> None:
    """Empty the bench Redis database (only that number)."""
    import redis

    client = redis.Redis.from_url(bench_redis_url())
    try:
        client.flushdb()
    finally:
        client.close()


_django_ready = False
_lock_handle = None
LOCK_ENV = "BENCH_LOCK_HELD"


def hold_bench_lock() -> None:
    """Wait until no other benchmark runs on this machine, then keep the lock until exit.

    Two benchmarks at once would flush each other's Redis db, share the bench database and
    steal each other's CPU. Processes started by a benchmark inherit ``BENCH_LOCK_HELD``.
    """
    global _lock_handle
    if _lock_handle is not None or os.environ.get(LOCK_ENV):
        return
    import fcntl

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    handle = open(RESULTS_DIR / ".lock", "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("bench: another benchmark is running; waiting for it to finish", file=sys.stderr, flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    _lock_handle = handle
    os.environ[LOCK_ENV] = "1"


def setup_django(*, migrate: bool = True, seed: bool = True, flush: bool = True) -> None:
    """Point this process at the bench database and Redis, then migrate and seed (idempotent).

    Call it before importing anything that touches models. ``flush`` empties the bench Redis db.
    Holds the machine-wide bench lock (``hold_bench_lock``) until the process exits.
    """
    global _django_ready
    hold_bench_lock()
    os.environ.update(bench_env())
    if _django_ready:
        return
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    if migrate:
        call_command("migrate", interactive=False, verbosity=0)
    if seed:
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            call_command("seed_reference")
    if flush:
        flush_redis()
    _django_ready = True


def bench_user(email: str = "bench@example.com", password: str = "bench-password-123"):  # noqa: S107
    """A plain (role user) account for authenticated requests, created once."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model.objects.filter(email=email).first()
    if user is None:
        user = user_model.objects.create_user(email=email, password=password)
    return user


def access_token(user=None) -> str:
    """A JWT access token (valid for the process's settings lifetime) for ``user``."""
    from rest_framework_simplejwt.tokens import RefreshToken

    return str(RefreshToken.for_user(user or bench_user()).access_token)


# --- ports, processes, CPU --------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 30.0, proc=None) -> None:
    """Wait until something accepts connections on ``host:port`` (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def cores() -> int:
    return os.cpu_count() or 1


def pin(core: int | Sequence[int] | None, pid: int = 0) -> None:
    """Pin a process (``0`` = this one) to a core or cores; no-op where unsupported."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return
    wanted = {core} if isinstance(core, int) else set(core)
    wanted &= os.sched_getaffinity(0) | set(range(cores()))
    if wanted:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, wanted)


def taskset_prefix(core: int | None) -> list[str]:
    """``["taskset", "-c", "N"]`` for a command line, or nothing when not available."""
    if core is None or not shutil.which("taskset") or cores() < 2:
        return []
    return ["taskset", "-c", str(core)]


@dataclass
class Process:
    """A subprocess started for a benchmark; ``stop()`` terminates its whole process group."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=bench_env)
    core: int | None = None
    port: int | None = None
    cwd: Path = ROOT
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self, *, wait_timeout: float = 30.0) -> Process:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS_DIR / f"{self.name}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it until stop()
        self.proc = subprocess.Popen(
            taskset_prefix(self.core) + self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self.port is not None:
            try:
                wait_for_port(self.port, timeout=wait_timeout, proc=self.proc)
            except Exception:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def rss_kib(self) -> int:
        """Resident memory of the process (KiB), from /proc."""
        if self.proc is None:
            return 0
        return rss_kib(self.proc.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when unknown)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def daphne_cmd(port: int, app: str = "marketapp.asgi:application") -> list[str]:
    """daphne serving ``app`` on 127.0.0.1:port."""
    return [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--access-log", os.devnull, app]


def uvicorn_cmd(port: int, app: str = "marketapp.asgi:application", *extra: str) -> list[str]:
    """uvicorn serving ``app`` on 127.0.0.1:port (no access log)."""
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
        app,
    ]


def server(kind: str, name: str, app: str = "marketapp.asgi:application", **env_extra: str) -> Process:
    """A (not yet started) web server process of ``kind`` daphne|uvicorn on ``SERVER_CORE``."""
    port = free_port()
    cmd = daphne_cmd(port, app) if kind == "daphne" else uvicorn_cmd(port, app)
    return Process(name=name, cmd=cmd, env=bench_env(**env_extra), core=SERVER_CORE, port=port)


# --- timing and statistics --------------------------------------------------------------------
class Timer:
    """``with Timer() as t: ...``; then ``t.elapsed`` (wall s) and ``t.cpu`` (this process's CPU s)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.elapsed = 0.0
        self.cpu = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu_start


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of already sorted values, nearest-rank with interpolation."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo))


def summarize(values: Iterable[float], *, scale: float = 1.0, digits: int = 3) -> dict[str, float | int]:
    """count, mean, p50, p90, p99, max of ``values`` times ``scale`` (e.g. 1000 for s -> ms)."""
    data = sorted(v * scale for v in values)
    if not data:
        return {"count": 0}
    return {
        "count": len(data),
        "mean": round(statistics.fmean(data), digits),
        "p50": round(percentile(data, 50), digits),
        "p90": round(percentile(data, 90), digits),
        "p99": round(percentile(data, 99), digits),
        "max": round(data[-1], digits),
    }


def ratio(ours: float, baseline: float, *, higher_is_better: bool = True) -> float:
    """ours / baseline for throughputs (baseline / ours for latencies), rounded to 3 digits."""
    if not ours or not baseline:
        return 0.0
    return round(ours / baseline if higher_is_better else baseline / ours, 3)


# --- machine and results ------------------------------------------------------------------------
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


def arg_parser(description: str) -> argparse.ArgumentParser:
    """The common command line: ``--quick`` for the small variant."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, short durations (make bench-quick)")
    return parser


# --- shared data ----------------------------------------------------------------------------
def bench_instruments(count: int, *, exchange: str = "NSE", prefix: str = "BENCH") -> list:
    """``count`` active instruments ``{prefix}0001..`` on ``exchange`` (created once, reused).

    Returns the Instrument rows ordered by symbol, with ``exchange`` loaded.
    """
    from exchanges.models import Exchange
    from instruments.models import Instrument, InstrumentType

    ex = Exchange.objects.get(code=exchange)
    kind = InstrumentType.objects.order_by("id").first()
    symbols = [f"{prefix}{i:04d}" for i in range(1, count + 1)]
    have = set(Instrument.objects.filter(exchange=ex, symbol__in=symbols).values_list("symbol", flat=True))
    missing = [
        Instrument(symbol=s, name=f"Bench {s}", exchange=ex, instrument_type=kind, currency=ex.currency or "")
        for s in symbols
        if s not in have
    ]
    Instrument.objects.bulk_create(missing, batch_size=1000)
    return list(
        Instrument.objects.filter(exchange=ex, symbol__in=symbols).select_related("exchange").order_by("symbol")
    )
