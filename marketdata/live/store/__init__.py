"""Where recent market data lives: Redis in the stack mode, process memory when embedded."""

from __future__ import annotations

from django.conf import settings

from .base import PersistEntry, QuoteResume, StoreBatch, TickStore, TickStoreState

__all__ = ["PersistEntry", "QuoteResume", "StoreBatch", "TickStore", "TickStoreState", "get_tick_store"]

_memory_store: TickStore | None = None


def get_tick_store() -> TickStore:
    """The configured tick store: Redis when ``REDIS_URL`` is set, else the process-wide memory one."""
    global _memory_store
    if settings.REDIS_URL:
        from .redis import RedisTickStore

        return RedisTickStore(settings.REDIS_URL)
    if _memory_store is None:
        from .memory import MemoryTickStore

        _memory_store = MemoryTickStore()
    return _memory_store
