"""Redis keys, clients, scripts and the lease of the provider streams (see the package docstring)."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry


class StreamError(Exception):
    """A stream cannot be started as asked (unknown or inactive provider, bad argument)."""


class StreamUnavailable(StreamError):
    """Redis, which coordinates the streams, is not configured or not reachable."""


def lease_key(code: str) -> str:
    return f"stream:lease:{code}"


def stop_key(code: str) -> str:
    return f"stream:stop:{code}"


def starting_key(code: str) -> str:
    return f"stream:starting:{code}"


def status_key(code: str) -> str:
    return f"stream:status:{code}"


def worker_stop_key(node: str) -> str:
    return f"stream:worker-stop:{node}"


def default_worker_id(node: str = "") -> str:
    """``node:pid``, where node is the Celery worker's name (else the host name)."""
    return f"{node or socket.gethostname()}:{os.getpid()}"


# --- Redis clients ----------------------------------------------------------------------------------


@functools.cache
def _client(url: str, timeout: float) -> redis.Redis:
    # No retries: a caller (an admin page, an API request) must fail fast, not back off for seconds.
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), decode_responses=True
    )


def redis_client() -> redis.Redis:
    """The shared synchronous client with short timeouts; ``StreamUnavailable`` without Redis."""
    if not settings.REDIS_URL:
        raise StreamUnavailable("provider streams run in Celery workers in the stack mode only (REDIS_URL is not set)")
    return _client(settings.REDIS_URL, settings.STREAM_REDIS_TIMEOUT_S)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Turn Redis failures into ``StreamUnavailable``."""
    try:
        yield
    except RedisError as exc:
        raise StreamUnavailable(f"Redis is not reachable: {exc}") from exc


# Only the holder renews or releases; only the holder writes the status it reports.
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
STATUS = (
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end redis.call('hset', KEYS[2], unpack(ARGV, 2)) return 1"
)
# The watchdog notes a stream that vanished without stopping (a killed worker).
LAPSED = (
    "if redis.call('exists', KEYS[1]) == 0 and redis.call('hget', KEYS[2], 'running') == '1' then "
    "redis.call('hset', KEYS[2], 'running', '0', 'last_error', ARGV[1], 'last_error_at', ARGV[2], "
    "'stop_reason', ARGV[1], 'stopped_at', ARGV[2]) return 1 end return 0"
)


class StreamLease:
    """The right to stream one provider, held by one worker id at a time."""

    def __init__(self, client: aioredis.Redis, *, provider_code: str, holder: str, ttl_s: float) -> None:
        self.redis = client
        self.key = lease_key(provider_code)
        self.holder_id = holder
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(await self.redis.set(self.key, self.holder_id, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (lapsed or taken)."""
        return await self._renew(keys=[self.key], args=[self.holder_id, self.ttl_ms]) == 1

    async def release(self) -> bool:
        """Give the lease up; False when it was not ours any more."""
        return await self._release(keys=[self.key], args=[self.holder_id]) == 1

    async def holder(self) -> str | None:
        return await self.redis.get(self.key)
