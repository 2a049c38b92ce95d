"""Synchronous reads of the tick store, for Django's sync views (the REST API).

The async Redis client is bound to an event loop, which a sync view does not have; these
use one thread-safe redis-py client per process, with the same keys and encoding as
``RedisTickStore``. The embedded memory store is read through its async API.
"""

from __future__ import annotations

import functools

import orjson
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from marketdata.live.types import Bar, Quote

from . import get_tick_store
from .redis import OPEN_BARS, QUOTES, bars_key


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def latest_quotes(instrument_ids: list[int]) -> dict[int, Quote]:
    """The latest quote of each instrument that has one."""
    if not instrument_ids:
        return {}
    if settings.REDIS_URL:
        values = _redis(settings.REDIS_URL).hmget(QUOTES, instrument_ids)
        return {i: Quote.from_dict(orjson.loads(v)) for i, v in zip(instrument_ids, values, strict=True) if v}
    return async_to_sync(get_tick_store().latest_quotes)(instrument_ids)


def recent_bars(instrument_id: int, start_ms: int, end_ms: int) -> list[Bar]:
    """1-minute bars still in the store (closed, awaiting or past persistence, and the open one)."""
    if not settings.REDIS_URL:
        return async_to_sync(get_tick_store().recent_bars)(instrument_id, start_ms, end_ms)
    pipe = _redis(settings.REDIS_URL).pipeline(transaction=False)
    pipe.zrangebyscore(bars_key(instrument_id), start_ms, f"({end_ms}")
    pipe.hget(OPEN_BARS, instrument_id)
    closed, open_raw = pipe.execute()
    by_ts = {bar.ts: bar for bar in (Bar.from_dict(orjson.loads(raw)) for raw in closed)}
    if open_raw:
        bar = Bar.from_dict(orjson.loads(open_raw))
        if start_ms <= bar.ts < end_ms:
            by_ts[bar.ts] = bar
    return [by_ts[k] for k in sorted(by_ts)]
