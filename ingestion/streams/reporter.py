"""The stream status records of a ``MarketRuntime`` run outside Celery (``manage.py ingest``).

A Celery stream (``runner.StreamRunner``) holds its provider's lease and reports to
``stream:status:{code}``; the admin, ``/providers/{id}/status`` and the other streams' failover
read those records. ``manage.py ingest`` streams the same providers in the foreground, so it
writes the same records: it takes the lease of every provider its runtime streams (so the
watchdog starts no second stream of it), reports each one every ``STREAM_STATUS_INTERVAL_S``,
leaves alone the providers another worker already streams or an operator stopped, and on exit
writes ``stopped`` and releases the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque

import redis.asyncio as aioredis
from django.conf import settings
from django.db import close_old_connections
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ingestion.runtime import MarketRuntime, run_until_signalled
from ingestion.streaming import StreamPlan, stream_plan

from .keys import RELEASE, RENEW, STATUS, default_worker_id, lease_key, redis_client, status_key, stop_key

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0


class RuntimeStatusReporter:
    """Holds the leases of the providers a runtime streams and writes their status records."""

    def __init__(self, runtime: MarketRuntime, *, worker_id: str | None = None) -> None:
        self.runtime = runtime
        self.worker_id = worker_id or default_worker_id("ingest")
        self.ttl_s = settings.STREAM_LEASE_TTL_S
        self.interval_s = min(settings.STREAM_STATUS_INTERVAL_S, self.ttl_s / 3)
        self.held: dict[str, float] = {}  # provider code -> when this process took its lease
        self.excluded: dict[str, str] = {}  # provider code -> why this process leaves it alone
        self._ticks: dict[str, deque[tuple[float, int]]] = {}
        self._redis: aioredis.Redis | None = None
        runtime.manager.plan_loader = self.plan_loader

    # --- which providers this process may stream ---------------------------------------------
    def plan_loader(self, *, provider_codes: list[str] | None = None) -> StreamPlan:
        """``stream_plan`` without the providers streamed elsewhere or stopped by an operator."""
        close_old_connections()
        plan = stream_plan(provider_codes=provider_codes)
        codes = list(plan.providers)
        try:
            pipe = redis_client().pipeline(transaction=False)
            for code in codes:
                pipe.get(lease_key(code))
                pipe.exists(stop_key(code))
            replies = pipe.execute()
        except RedisError as exc:
            logger.warning("ingest: stream leases unknown (%s); keeping %s aside", exc, sorted(self.excluded))
        else:
            excluded = {}
            for i, code in enumerate(codes):
                holder, stopped = replies[2 * i], replies[2 * i + 1]
                if stopped:
                    excluded[code] = "stopped by an operator (POST /providers/{id}/start or the admin resumes it)"
                elif holder and holder != self.worker_id:
                    excluded[code] = f"already streamed by {holder}"
            for code, why in excluded.items():
                if self.excluded.get(code) != why:
                    logger.warning("ingest: not streaming %s here: %s", code, why)
            self.excluded = excluded
        keep = {code: spec for code, spec in plan.providers.items() if code not in self.excluded}
        candidates = {}
        for iid, cands in plan.candidates.items():
            mine = [(code, sub) for code, sub in cands if code in keep]
            if mine:
                candidates[iid] = mine
        return StreamPlan(keep, candidates, {iid: plan.timezones[iid] for iid in candidates})

    # --- the records ----------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run the runtime until signalled (``run_until_signalled``), reporting meanwhile."""
        self._redis = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.STREAM_REDIS_TIMEOUT_S,
            socket_connect_timeout=settings.STREAM_REDIS_TIMEOUT_S,
            retry=AsyncRetry(NoBackoff(), 0),
            decode_responses=True,
        )
        reporting = asyncio.create_task(self._report_forever(), name="ingest-status")
        try:
            await run_until_signalled(self.runtime, stop)
        finally:
            reporting.cancel()
            await asyncio.gather(reporting, return_exceptions=True)
            with contextlib.suppress(RedisError):
                await self.close()
            await self._redis.aclose()

    async def _report_forever(self) -> None:
        while True:
            try:
                await self.report()
            except RedisError as exc:
                logger.warning("ingest: Redis unavailable for the stream status (%s)", exc)
            except Exception:
                # Never let one bad round end the reporting: the status would freeze as it was.
                logger.exception("ingest: stream status report failed; reporting again in %.1fs", self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def report(self) -> None:
        """Take or renew the lease of each running client's provider and write its status."""
        client = self._redis
        ttl_ms = max(1, int(self.ttl_s * 1000))
        running = set(self.runtime.manager.clients)
        for code in sorted(running - set(self.held)):
            if await client.set(lease_key(code), self.worker_id, nx=True, px=ttl_ms):
                self.held[code] = time.time()
                await self._write(code, {"stop_reason": "", "stopped_at": ""})
        for code in sorted(set(self.held) & running):
            if await client.eval(RENEW, 1, lease_key(code), self.worker_id, ttl_ms) != 1:
                # Another worker took it: the next plan refresh leaves the provider to it.
                logger.error("ingest: lost the stream lease of %s", code)
                self.held.pop(code)
        for code in sorted(set(self.held) - running):
            await self._stopped(code, "not streamed any more (deactivated, or no instruments to stream)")
        for code in list(self.held):
            # The manager may have stopped a client while this round awaited Redis: the next
            # round reports it stopped.
            if code in self.runtime.manager.clients:
                await self._write(code, self._fields(code))

    async def close(self, reason: str = "stopped") -> None:
        """Mark every provider this process reported stopped and release its lease."""
        for code in list(self.held):
            await self._stopped(code, reason)

    async def _stopped(self, code: str, reason: str) -> None:
        await self._write(code, {"running": "0", "stop_reason": reason, "stopped_at": str(time.time())})
        await self._redis.eval(RELEASE, 1, lease_key(code), self.worker_id)
        self.held.pop(code, None)
        self._ticks.pop(code, None)

    def _fields(self, code: str) -> dict[str, str]:
        manager = self.runtime.manager
        feed = manager.clients[code]
        now = time.time()
        samples = self._ticks.setdefault(code, deque())
        samples.append((now, feed.stats.ticks))
        while len(samples) > 1 and now - samples[0][0] > RATE_WINDOW_S:
            samples.popleft()
        span = now - samples[0][0]
        rate = (feed.stats.ticks - samples[0][1]) / span if span > 0 else 0.0
        serving = sum(1 for c in manager.assignment.values() if c == code)
        fields = {
            "running": "1",
            "worker": self.worker_id,
            "pid": str(os.getpid()),
            "started_at": str(self.held[code]),
            "updated_at": str(now),
            "ticks_per_second": f"{rate:.3f}",
            "ticks": str(feed.stats.ticks),
            "last_tick_ms": str(int(feed.stats.last_tick_at * 1000)) if feed.stats.last_tick_at else "",
            "healthy": "0" if manager.is_down(code) else "1",
            "clients": json.dumps([{**feed.status_dict(), "serving": serving}], default=str),
        }
        if feed.last_error:
            fields["last_error"] = feed.last_error
            fields["last_error_at"] = str(now)
        return fields

    async def _write(self, code: str, fields: dict[str, str]) -> None:
        args = [self.worker_id]
        for key, value in fields.items():
            args += [key, value]
        await self._redis.eval(STATUS, 2, lease_key(code), status_key(code), *args)
