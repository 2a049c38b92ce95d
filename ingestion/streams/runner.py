"""The running stream: one provider's engine in this process while it holds the provider's lease."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
from django.conf import settings
from django.db import close_old_connections
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ingestion.models import Provider
from ingestion.streaming import StreamPlan, stream_plan

from .keys import (
    STATUS,
    StreamError,
    StreamLease,
    default_worker_id,
    lease_key,
    redis_client,
    starting_key,
    status_key,
    stop_key,
    worker_stop_key,
)

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0  # a runtime that cannot stop in time (Redis away) is abandoned, not waited for

# --- which instruments a provider's stream serves ---------------------------------------------------


def provider_stream_plan(*, plan: StreamPlan, provider_code: str, healthy: set[str]) -> StreamPlan:
    """The part of the full stream ``plan`` that one provider's stream serves.

    Each provider streams in its own worker, so two streams must never take the same
    instrument: an instrument goes to its best-ranked candidate that is either this provider
    or a provider whose stream reports itself healthy (``healthy``). A primary whose stream is
    down therefore hands its instruments to the next provider's stream, and takes them back
    once it is healthy again: the manager's failover, across processes.
    """
    candidates = {}
    for iid, cands in plan.candidates.items():
        for code, sub in cands:
            if code == provider_code:
                candidates[iid] = [(code, sub)]
                break
            if code in healthy:
                break
    providers = {provider_code: plan.providers[provider_code]} if provider_code in plan.providers else {}
    return StreamPlan(providers, candidates, {iid: plan.timezones[iid] for iid in candidates})


def _healthy_streams(codes: Iterable[str], *, fresh_s: float) -> set[str]:
    """The providers whose stream holds its lease and reported a healthy feed recently."""
    codes = list(codes)
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    for code in codes:
        pipe.exists(lease_key(code))
        pipe.hmget(status_key(code), "healthy", "updated_at")
    replies = pipe.execute()
    now = time.time()
    healthy = set()
    for i, code in enumerate(codes):
        leased, (flag, updated) = replies[2 * i], replies[2 * i + 1]
        if leased and flag == "1" and updated and now - float(updated) <= fresh_s:
            healthy.add(code)
    return healthy


# --- the running stream ------------------------------------------------------------------------------


@dataclass
class StreamOutcome:
    """How a run ended: whether it streamed at all, and why it stopped."""

    provider: str
    worker: str
    started: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


class StreamRunner:
    """Streams one provider while it holds the provider's lease; stops when told or when the lease is lost."""

    def __init__(
        self,
        *,
        provider_code: str,
        worker_id: str | None = None,
        node: str = "",
        ttl_s: float | None = None,
        status_interval_s: float | None = None,
        refresh_s: float | None = None,
    ) -> None:
        self.code = provider_code
        self.node = node
        self.worker_id = worker_id or default_worker_id(node)
        self.ttl_s = ttl_s or settings.STREAM_LEASE_TTL_S
        self.status_interval_s = status_interval_s or settings.STREAM_STATUS_INTERVAL_S
        self.refresh_s = refresh_s or settings.STREAM_REFRESH_S
        self.poll_s = min(0.5, self.ttl_s / 6)
        # Stop while the lease surely still holds: before it could lapse on the server.
        self.margin_s = max(2 * self.poll_s, self.ttl_s * 0.2)
        self.parent_pid = os.getppid()
        self.last_error = ""
        self.stop_reason = ""
        self.provider_gone = False
        self._healthy: set[str] = set()
        self.runtime = None

    async def run(self) -> StreamOutcome:
        """Take the lease and stream until stopped; returns at once when the lease is taken."""
        timeout = max(0.2, min(2.0, self.ttl_s / 4))
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=AsyncRetry(NoBackoff(), 0),  # the lease logic retries, on its own schedule
            decode_responses=True,
        )
        try:
            lease = StreamLease(client, provider_code=self.code, holder=self.worker_id, ttl_s=self.ttl_s)
            if await client.exists(stop_key(self.code)):
                logger.info("stream %s: stopped by an operator; not starting", self.code)
                return StreamOutcome(self.code, self.worker_id, False, "stopped by an operator")
            if not await lease.acquire():
                holder = await lease.holder()
                logger.info("stream %s: already running on %s; not starting", self.code, holder)
                return StreamOutcome(self.code, self.worker_id, False, f"already running on {holder}")
            await client.delete(starting_key(self.code))
            reason = await self._stream(client, lease)
            return StreamOutcome(self.code, self.worker_id, True, reason)
        finally:
            await client.aclose()

    async def _stream(self, client: aioredis.Redis, lease: StreamLease) -> str:
        from ingestion.runtime import MarketRuntime

        renewed_at = time.monotonic()
        self.started_at = time.time()
        self._status_script = client.register_script(STATUS)
        runtime = self.runtime = MarketRuntime(provider_codes=[self.code], refresh_s=self.refresh_s)
        runtime.manager.plan_loader = self._load_plan
        stop = asyncio.Event()
        # The lease is kept from the moment it is taken, so a slow start cannot outlive it.
        keeper = asyncio.create_task(self._guard(self._keep_lease(lease, renewed_at), stop))
        watcher = asyncio.create_task(self._guard(self._watch(client), stop))
        stopped = asyncio.create_task(stop.wait())
        crash: BaseException | None = None
        try:
            await self._write_status(client, {"stop_reason": "", "stopped_at": ""})
            starting = asyncio.create_task(runtime.start())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
            await starting
            logger.info("stream %s: streaming as %s", self.code, self.worker_id)
            await stopped
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
        except Exception as exc:
            crash = exc
            self.stop_reason = self.last_error = f"crashed: {type(exc).__name__}: {exc}"
            logger.exception("stream %s crashed", self.code)
        finally:
            for task in (watcher, stopped):
                task.cancel()
            await asyncio.gather(watcher, stopped, return_exceptions=True)
            try:
                await asyncio.wait_for(runtime.stop(), STOP_TIMEOUT_S)
            except Exception as exc:
                logger.warning("stream %s: runtime did not stop cleanly (%s)", self.code, exc)
            # Renewed until the feed is down, so no other worker starts before this one is done.
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            with contextlib.suppress(Exception):
                await runtime.store.close()
            reason = self.stop_reason or "stopped"
            with contextlib.suppress(RedisError):
                now = str(time.time())
                await self._write_status(client, {"running": "0", "stop_reason": reason, "stopped_at": now})
                await lease.release()
            logger.info("stream %s: stopped as %s (%s)", self.code, self.worker_id, reason)
        if crash is not None:
            raise crash
        return reason

    async def _guard(self, watcher, stop: asyncio.Event) -> None:
        """Run a watcher until it names a reason to stop; a watcher that fails stops the stream too."""
        try:
            reason = await watcher
        except Exception as exc:  # without its watchers a stream could outlive its lease
            logger.exception("stream %s: watcher failed", self.code)
            reason = self.last_error = f"watcher failed: {type(exc).__name__}: {exc}"
        if not self.stop_reason:
            self.stop_reason = reason
        stop.set()

    async def _keep_lease(self, lease: StreamLease, renewed_at: float) -> str:
        """Renew every TTL/3; returns why the lease is no longer safely ours."""
        while True:
            await asyncio.sleep(max(0.0, renewed_at + self.ttl_s / 3 - time.monotonic()))
            while True:
                attempt = time.monotonic()
                try:
                    if await lease.renew():
                        renewed_at = attempt
                        break
                    self.last_error = f"lease lost (now held by {await lease.holder()})"
                    logger.error("stream %s: %s; stopping at once", self.code, self.last_error)
                    return self.last_error
                except RedisError as exc:
                    logger.warning("stream %s: lease renewal failed (%s)", self.code, exc)
                    if time.monotonic() - renewed_at >= self.ttl_s - self.margin_s:
                        self.last_error = f"lease could not be renewed: {exc}"
                        logger.error("stream %s: %s; stopping at once", self.code, self.last_error)
                        return self.last_error
                await asyncio.sleep(self.poll_s)

    async def _watch(self, client: aioredis.Redis) -> str:
        """Check the stop flags every poll and report the status; returns why to stop."""
        next_status = 0.0
        while True:
            if os.getppid() != self.parent_pid:
                return "worker process gone"
            if self.provider_gone:
                return "provider deactivated or deleted"
            try:
                pipe = client.pipeline(transaction=False)
                pipe.exists(stop_key(self.code))
                pipe.exists(worker_stop_key(self.node or "-"))
                operator_stop, worker_stop = await pipe.execute()
                if operator_stop:
                    return "stopped by an operator"
                if worker_stop:
                    return "worker shutting down"
                now = time.monotonic()
                if now >= next_status:
                    await self._write_status(client, self._report())
                    next_status = now + self.status_interval_s
            except RedisError as exc:
                logger.warning("stream %s: Redis unavailable for flags/status (%s)", self.code, exc)
            await asyncio.sleep(self.poll_s)

    def _report(self) -> dict[str, str]:
        runtime = self.runtime
        stats = runtime.engine.stats
        clients = runtime.manager.status()
        error = self.last_error or next((c["last_error"] for c in clients if c.get("last_error")), "")
        fields = {
            "running": "1",
            "worker": self.worker_id,
            "pid": str(os.getpid()),
            "started_at": str(self.started_at),
            "updated_at": str(time.time()),
            "ticks_per_second": f"{stats.ticks_per_second(60.0):.3f}",
            "ticks": str(stats.ticks_in),
            "last_tick_ms": str(stats.last_tick_ms or ""),
            "healthy": "0" if runtime.manager.is_down(self.code) else "1",
            "clients": json.dumps(clients, default=str),
        }
        if error:
            fields["last_error"] = error
            fields["last_error_at"] = str(time.time())
        return fields

    async def _write_status(self, client: aioredis.Redis, fields: dict[str, str]) -> None:
        args = [self.worker_id]
        for key, value in fields.items():
            args += [key, value]
        await self._status_script(keys=[lease_key(self.code), status_key(self.code)], args=args)

    def _load_plan(self, *, provider_codes: list[str] | None = None) -> StreamPlan:
        # Runs in the manager's worker thread, like stream_plan itself.
        close_old_connections()
        plan = stream_plan()
        try:
            others = [c for c in plan.providers if c != self.code]
            fresh = max(self.ttl_s, 3 * self.status_interval_s)
            self._healthy = _healthy_streams(others, fresh_s=fresh) if others else set()
        except (StreamError, RedisError) as exc:
            logger.warning("stream %s: peers' health unknown (%s); keeping %s", self.code, exc, self._healthy)
        if self.code not in plan.providers:
            self.provider_gone = True
        return provider_stream_plan(plan=plan, provider_code=self.code, healthy=self._healthy)


def _provider_by_code(provider_code: object) -> Provider:
    if not isinstance(provider_code, str) or not provider_code.strip() or len(provider_code) > 16:
        raise StreamError(f"provider_code must be a provider code such as 'SIM', got {provider_code!r}")
    provider = Provider.objects.filter(code__iexact=provider_code.strip()).defer("credentials").first()
    if provider is None:
        raise StreamError(f"Unknown provider code {provider_code!r}")
    return provider


def stream_run(*, provider_code: str, node: str = "") -> dict:
    """Stream one provider in this process until it is stopped (the ``run_stream`` task's body).

    Raises ``StreamError`` for an unknown or inactive provider before any lease is taken.
    """
    provider = _provider_by_code(provider_code)
    if not provider.is_active:
        raise StreamError(f"Provider {provider.code} is inactive; activate it before starting its stream")
    redis_client()  # the clear error when Redis is not configured
    runner = StreamRunner(provider_code=provider.code, node=node)
    return asyncio.run(runner.run()).as_dict()
