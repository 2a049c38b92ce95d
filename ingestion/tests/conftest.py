"""Fixtures for the ingestion tests: tick stores on the real Redis and in memory."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from marketdata.live.store.memory import MemoryTickStore
from marketdata.live.store.redis import RedisTickStore


@pytest.fixture
async def redis_store():
    """A Redis tick store on the test Redis database, emptied before and after."""
    store = RedisTickStore(settings.REDIS_URL or "redis://127.0.0.1:6379/15")
    await store.redis.flushdb()
    yield store
    await store.redis.flushdb()
    await store.close()


@pytest.fixture(params=["redis", "memory"])
async def tick_store(request):
    """Both tick store implementations, so they are held to the same behaviour."""
    if request.param == "memory":
        yield MemoryTickStore()
        return
    store = RedisTickStore(settings.REDIS_URL or "redis://127.0.0.1:6379/15")
    await store.redis.flushdb()
    yield store
    await store.redis.flushdb()
    await store.close()


class RecordingPublisher:
    """Collects what the engine publishes (the real channel layer is tested in marketdata)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    async def publish(self, messages):
        self.messages.extend(messages)


@pytest.fixture
def recorder():
    return RecordingPublisher()


@pytest.fixture
def restart_database():
    """Terminate the other connections to the test database, as a database restart does.

    The worker threads' connections die with it. The main thread's connection is closed at
    teardown, so that the test database can still be emptied after the test.
    """

    def restart() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    yield sync_to_async(restart)
    connection.close()


def one_worker_thread() -> None:
    """Run every ``sync_to_async(thread_sensitive=False)`` call in one thread, so the thread
    whose connection is killed is certainly the one used next."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
