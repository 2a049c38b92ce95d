"""The project's settings with PostgreSQL connection pooling, for the ``history`` benchmark.

Django's ASGI handler runs every request's sync code in a new thread, so persistent
connections (``CONN_MAX_AGE``) are per thread: each request opens its own and leaves it to
the garbage collector (at concurrency 16 PostgreSQL ran out of connections). Django 5.1+
pools instead (``OPTIONS["pool"]``, psycopg-pool, with ``CONN_MAX_AGE = 0``). This module is
the proposed settings change, measured without editing ``marketapp/settings.py``.
"""

from marketapp.settings import *  # noqa: F403
from marketapp.settings import DATABASES, env

DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
    "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
    "timeout": env.float("DB_POOL_TIMEOUT_S", default=10.0),
}
