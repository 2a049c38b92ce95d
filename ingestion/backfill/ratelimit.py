"""Request rate limits shared by every worker: a token bucket per provider.

Stack mode keeps the bucket in Redis and updates it in one Lua script, so concurrent workers
on any host draw from the same bucket atomically, timed by the Redis server's clock rather
than each host's. The embedded mode (no Redis) uses the same algorithm in process memory.

A caller always takes a token, even when the bucket is empty: the bucket goes into debt and
the caller is told how long to wait before using it. Waiting callers therefore never poll
Redis, and their requests go out in the order they reserved them.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

import redis

# KEYS[1]: the bucket; ARGV[1]: rate (tokens/s), ARGV[2]: capacity (burst).
# Returns the milliseconds to wait before the reserved token may be used.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
    tokens = capacity
    ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
-- Forget the bucket once it would have refilled anyway (plus any debt).
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * 1000 / rate) + 1000)
if tokens >= 0 then
    return 0
end
return math.ceil(-tokens * 1000 / rate)
"""


class RateLimiter(Protocol):
    """Something that paces requests: ``acquire()`` returns once a request may go out."""

    def acquire(self) -> float:
        """Block until the next request may be sent; returns the seconds waited."""
        ...


def bucket_capacity(rate: float) -> float:
    """The burst a bucket allows: one second's worth of requests, at least one."""
    return max(1.0, math.floor(rate))


class RedisTokenBucket:
    """A token bucket in Redis shared by every process using the same ``key``."""

    def __init__(self, *, client: redis.Redis, key: str, rate: float, capacity: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.client = client
        self.key = key
        self.rate = rate
        self.capacity = capacity if capacity is not None else bucket_capacity(rate)
        self._take = client.register_script(_TAKE_SCRIPT)

    def reserve(self) -> float:
        """Take a token now; returns the seconds to wait before using it."""
        return int(self._take(keys=[self.key], args=[self.rate, self.capacity])) / 1000

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
        return wait


class LocalTokenBucket:
    """The same bucket in process memory, for the embedded mode; thread-safe."""

    def __init__(self, *, rate: float, capacity: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else bucket_capacity(rate)
        self._tokens = self.capacity
        self._ts = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token now; returns the seconds to wait before using it."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._ts) * self.rate) - 1
            self._ts = now
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
        return wait


_local_buckets: dict[tuple[str, float], LocalTokenBucket] = {}
_redis_clients: dict[str, redis.Redis] = {}
_local_lock = threading.Lock()


def rate_limiter_for(*, provider_code: str, rate: float, redis_url: str = "") -> RateLimiter:
    """The shared bucket of a provider: in Redis when ``redis_url`` is set, else this process's own."""
    with _local_lock:
        if redis_url:
            if redis_url not in _redis_clients:  # one connection pool per process, not one per call
                _redis_clients[redis_url] = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
            return RedisTokenBucket(
                client=_redis_clients[redis_url], key=f"marketapp:ratelimit:{provider_code}", rate=rate
            )
        key = (provider_code, rate)
        if key not in _local_buckets:
            _local_buckets[key] = LocalTokenBucket(rate=rate)
        return _local_buckets[key]
