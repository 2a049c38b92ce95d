"""Where a benchmark runs: the bench database and Redis, the process environment, Django, seeded data.

Owns the bench database URL (``marketapp_bench``, or ``BENCH_DATABASE_URL``) and Redis URL
(db ``BENCH_REDIS_DB``, default 7, or ``BENCH_REDIS_URL``), the production-like environment
every bench process and server gets (``bench_env``), creating the database and flushing the
Redis db, the machine-wide bench lock, ``setup_django`` (migrate, seed), and the shared
seeded data: the bench user and its JWT, the ``BENCH0001``... instruments.
"""

from __future__ import annotations

import contextlib
import os
import sys
from urllib.parse import urlsplit, urlunsplit

from bench.common import RESULTS_DIR

BENCH_DB_NAME = os.environ.get("BENCH_DB_NAME", "marketapp_bench")
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "7"))


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
