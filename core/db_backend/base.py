"""Django's PostgreSQL backend, its connection pool checking connections with ``check_pooled_connection``.

Django creates the pool with psycopg-pool's own check (for ``CONN_HEALTH_CHECKS``), which finds
one dead connection at a time and waits after each (1 s, then 2, 4, ...) before it tries the
next: after a database restart every idle connection in the pool is dead, so with a few of them
a request waited longer than ``DB_POOL_TIMEOUT_S`` and failed (``PoolTimeout``) although
PostgreSQL was back. ``check_pooled_connection``, on the first dead connection, checks the whole
pool (``ConnectionPool.check``: the dead are replaced, the live kept), so the next try, after
the pool's one short wait, gets a fresh connection. Everything else is Django's backend.
"""

from __future__ import annotations

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

NO_DB_ALIAS = base.NO_DB_ALIAS


def check_pooled_connection(conn) -> None:
    """Raise when ``conn`` is dead, after sweeping the pool it came from of its other dead ones."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)
        if isinstance(pool, ConnectionPool):
            pool.check()
        raise


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        options = self.settings_dict["OPTIONS"].get("pool")
        if (
            options
            and self.alias != NO_DB_ALIAS
            and self.alias not in self._connection_pools
            and self.settings_dict.get("CONN_MAX_AGE", 0) == 0  # else Django's property refuses it
        ):
            kwargs = self.get_connection_params()
            kwargs["autocommit"] = True  # as Django's: it sets the connection's mode later
            pool = ConnectionPool(
                kwargs=kwargs,
                open=False,
                configure=self._configure_connection,
                check=check_pooled_connection,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return super().pool
