"""Fixtures for the ingestion tests: tick stores on the real Redis and in memory."""

from __future__ import annotations

import pytest
from django.conf import settings

from ingestion.tickstore.memory import MemoryTickStore
from ingestion.tickstore.redis import RedisTickStore


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
