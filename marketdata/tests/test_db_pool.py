"""Django's connection pool (``DB_POOL``, on by default with PostgreSQL) gets every slot back.

psycopg-pool never notices a checked-out connection whose thread is gone: each one not given
back is a slot lost for the process, and a handful starve every request (``PoolTimeout``).
"""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest
from channels.testing import WebsocketCommunicator
from django.db import connection

from core.db import release_connections
from marketapp.asgi import application
from marketdata.live.hub import close_hub
from marketdata.live.store.redis import RedisTickStore
from marketdata.tests.ws_support import access_token, redis_layer_settings, redis_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool():
    assert getattr(connection, "pool", None) is not None, "the default settings pool PostgreSQL connections"
    return connection.pool


def checked_out(pool) -> int:
    stats = pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


async def settled(pool, expected: int) -> int:
    """Checked-out connections, once they are back to ``expected`` (or after a bounded wait)."""
    for _ in range(100):
        if checked_out(pool) == expected:
            break
        await asyncio.sleep(0.01)
    return checked_out(pool)


async def test_ws_token_checks_symbol_lookups_and_rechecks_give_their_connections_back(pool, user, aapl, settings):
    settings.REDIS_URL = redis_url()
    settings.CHANNEL_LAYERS = redis_layer_settings(settings.REDIS_URL)
    settings.WS_AUTH_RECHECK_S = 0.05
    store = RedisTickStore(redis_url())
    before = checked_out(pool)
    try:
        # channels' test communicator silences channels.db.close_old_connections while it waits,
        # as a test does while a consumer runs: the release must not depend on that name.
        communicator = WebsocketCommunicator(application, f"/ws?token={access_token(user)}")
        connected, _ = await communicator.connect(timeout=3)
        assert connected
        await communicator.send_json_to({"message_type": "subscribe", "channel": "AAPL"})
        assert (await communicator.receive_json_from(timeout=3))["message_type"] == "info"
        await asyncio.sleep(0.2)  # a few account re-checks
        await communicator.send_json_to({"message_type": "ping"})
        assert await communicator.receive_json_from(timeout=3) == {"message_type": "pong"}
        await communicator.disconnect()
        assert await settled(pool, before) == before
    finally:
        await close_hub()
        await store.redis.flushdb()
        await store.close()


def test_a_thread_that_ends_holding_a_pooled_connection_gives_it_back(pool, user):
    before = checked_out(pool)

    def forgetful() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # and never closes: the thread just ends

    thread = threading.Thread(target=forgetful)
    thread.start()
    thread.join()
    assert asyncio.run(settled(pool, before)) == before


def test_after_a_database_restart_the_next_query_gets_a_fresh_connection(pool):
    """Every idle connection dies with a restart; psycopg-pool's own check would wait 1, 2, 4 s
    past them one by one and fail after DB_POOL_TIMEOUT_S (``core.db_backend``)."""
    barrier = threading.Barrier(4)
    pids: list[int] = []

    def hold_one() -> None:  # four connections in use at once, then idle in the pool
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids.append(cursor.fetchone()[0])
                barrier.wait(timeout=10)
        finally:
            release_connections()

    threads = [threading.Thread(target=hold_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(pids)) == 4 and pool.get_stats()["pool_available"] >= 4

    # The restart, as the pool sees it: its idle connections die (only those: other threads of
    # the test session keep theirs).
    with psycopg.connect(**{**connection.get_connection_params(), "autocommit": True}) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM unnest(%s::int[]) AS pid", [pids])
        assert killed.fetchone()[0] == 4

    found: list = []

    def query() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 42")
                found.append(cursor.fetchone()[0])
        except Exception as exc:
            found.append(exc)
        finally:
            release_connections()

    thread = threading.Thread(target=query)
    thread.start()
    thread.join()
    assert found == [42]
