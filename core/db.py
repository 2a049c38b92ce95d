"""Database connections of threads outside a request, and Django's connection pool.

With ``OPTIONS["pool"]`` (psycopg-pool) a thread's connection is a pool slot: closing it
gives it back. psycopg-pool does not notice a checked-out connection whose thread is gone,
so a slot that is never closed is lost for the life of the process, and a few of them starve
every request (``PoolTimeout``). Two rules keep every slot coming back:

- Work sent to a thread pool goes through ``db_sync_to_async``, which gives the thread's
  connections back after each call. channels' ``database_sync_to_async`` does the same through
  ``channels.db.close_old_connections``, but its test communicator turns that name into a no-op
  while a test awaits a consumer, so every token check of a ``/ws`` test kept a slot.
- ``track_pooled_connection`` (a ``connection_created`` receiver, connected by
  ``connect_pool_guard``) gives a pooled connection back when the thread that took it ends
  without closing it: the thread-local registry is dropped with the thread, which runs the
  finalizer.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.signals import connection_created


def release_connections() -> None:
    """Give back (to the pool) or close this thread's connections, unless one is in a transaction.

    ``close_old_connections`` with ``CONN_MAX_AGE=0``, minus closing inside ``atomic()``
    (that would break the transaction the caller is in).
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block:
            conn.close()


def db_sync_to_async[**P, R](func: Callable[P, R]) -> Callable[P, Any]:
    """``func`` run off the event loop on a pool thread (``thread_sensitive=False``), its
    connections given back when it returns, so no login or query waits behind another's."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        finally:
            release_connections()

    return sync_to_async(run, thread_sensitive=False)


class _ThreadConnections:
    """The pooled connection wrappers a thread opened; dropped (and finalized) with the thread."""

    def __init__(self) -> None:
        self.wrappers: list = []
        weakref.finalize(self, _give_back, self.wrappers)


_registry = threading.local()


def _give_back(wrappers: list) -> None:
    for wrapper in wrappers:
        conn, wrapper.connection = wrapper.connection, None
        pool = getattr(conn, "_pool", None)
        if conn is not None and pool is not None:
            with contextlib.suppress(Exception):  # a closed pool closes it instead
                pool.putconn(conn)


def track_pooled_connection(sender, connection, **kwargs) -> None:
    """Remember ``connection`` (a wrapper that just took a pooled connection) for its thread."""
    if getattr(connection, "pool", None) is None:
        return
    mine = getattr(_registry, "mine", None)
    if mine is None:
        mine = _registry.mine = _ThreadConnections()
    if connection not in mine.wrappers:
        mine.wrappers.append(connection)


def connect_pool_guard() -> None:
    """Give pooled connections back when their thread ends (idempotent; from an AppConfig)."""
    connection_created.connect(track_pooled_connection, dispatch_uid="core.db.track_pooled_connection")
