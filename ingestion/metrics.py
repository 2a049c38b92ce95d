"""This process's operating figures as one snapshot, and their publication to Redis.

The figures already live on the running objects: the engine's ``EngineStats``, each feed
client's ``FeedStats`` (and Dhan's ``packet_counts``), the saver's ``PROCESS_TOTALS`` and each
``FanoutHub`` (connections, subscriptions, what their outboxes sent, conflated and dropped).
Nothing here runs on the hot paths: ``process_snapshot`` reads those counters when asked.

The stack mode runs the web, the ingest processes and the Celery workers apart, and a
scrape of ``/metrics`` reaches one web process. So every process of the stack publishes its
snapshot to Redis every ``METRICS_SNAPSHOT_INTERVAL_S`` from a daemon thread
(``start_snapshot_publisher``): a hash ``metrics:proc:{host}:{pid}`` (fields ``role``,
``process``, ``snapshot`` as JSON) that expires after three intervals, listed in the sorted
set ``metrics:procs`` (scored by expiry, pruned on every write). The web process that is
scraped exports its own figures live and the others' from there (``read_snapshots``),
labelled by ``role`` and ``process``. A process that dies drops out within three intervals;
its counters restart with the process that replaces it (a new ``process`` label).

``cluster_figures`` reads what belongs to no process: the stream leases and the persist
stream's backlog and lag.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

import redis
from django.conf import settings

from ingestion.latency import LatencyHistogram
from ingestion.saver import PROCESS_TOTALS
from marketdata.live.hub import live_hubs

logger = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "metrics:proc:"
SNAPSHOT_INDEX = "metrics:procs"
SNAPSHOT_TTL_INTERVALS = 3
MAX_SNAPSHOTS = 1000  # read at most this many processes' snapshots per scrape
REDIS_TIMEOUT_S = 1.0
LEASE_PREFIX = "stream:lease:"

ENGINE_REFUSALS = {  # label of the reason -> EngineStats field
    "unknown_instrument": "ticks_unknown",
    "other_provider": "ticks_other_provider",
    "bad_price": "ticks_bad_price",
}
# Dhan's packet_counts entries that are frames refused or flagged (the others count packet kinds).
DHAN_REFUSALS = ("unknown_instrument", "no_price", "length_mismatch")

# The running ``ingestion.runtime.MarketRuntime`` objects (not imported: the runtime imports this).
_runtimes: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()
_role: str | None = None
_publisher: SnapshotPublisher | None = None


def process_id() -> str:
    """``host:pid``, the ``process`` label."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_role() -> str:
    """``embedded`` without Redis; else ``web``, ``ingest`` or ``worker`` (as the process started)."""
    if not settings.REDIS_URL:
        return "embedded"
    return _role or "web"


def runtime_started(runtime) -> None:
    """Count this runtime's engine, feeds and saver in the process snapshot."""
    _runtimes.add(runtime)


def runtime_stopped(runtime) -> None:
    _runtimes.discard(runtime)


# --- this process's snapshot -----------------------------------------------------------------------


def _engine_figures(runtimes: list) -> dict[str, Any] | None:
    if not runtimes:
        return None
    batch, publish = LatencyHistogram(), LatencyHistogram()
    out: dict[str, Any] = {"ticks": 0, "batches": 0, "bars_closed": 0, "store_errors": 0}
    refused = dict.fromkeys(ENGINE_REFUSALS, 0)
    for runtime in runtimes:
        stats = runtime.engine.stats
        out["ticks"] += stats.ticks_in
        out["batches"] += stats.batches
        out["bars_closed"] += stats.bars_closed
        out["store_errors"] += stats.store_errors
        for reason, name in ENGINE_REFUSALS.items():
            refused[reason] += getattr(stats, name, 0)
        for into, source in ((batch, stats.batch_seconds), (publish, stats.publish_seconds)):
            into.counts = [a + b for a, b in zip(into.counts, list(source.counts), strict=True)]
            into.total_s += source.total_s
    out["refused"] = refused
    out["batch_seconds"] = batch.as_dict()
    out["publish_seconds"] = publish.as_dict()
    return out


def _feed_figures(runtimes: list) -> dict[str, dict[str, Any]]:
    feeds: dict[str, dict[str, Any]] = {}
    for runtime in runtimes:
        for code, client in list(runtime.manager.clients.items()):
            stats = client.stats
            refused = {"malformed": stats.malformed, "unknown_instrument": stats.unknown}
            packet_counts = dict(getattr(client, "packet_counts", {}))
            for reason in DHAN_REFUSALS:
                if reason in packet_counts:
                    refused[reason] = refused.get(reason, 0) + packet_counts[reason]
            feeds[code] = {
                "ticks": stats.ticks,
                "reconnects": stats.reconnects,
                "up": 1 if client.healthy else 0,
                "refused": refused,
            }
    return feeds


def _ws_figures() -> dict[str, int] | None:
    hubs = live_hubs()
    if not hubs:
        return None
    total: dict[str, int] = {}
    for hub in hubs:
        for name, value in hub.figures().items():
            total[name] = total.get(name, 0) + value
    return total


def process_snapshot() -> dict[str, Any]:
    """This process's figures, JSON-ready: ``engine``, ``ws`` and ``saver`` only where they run here."""
    runtimes = list(_runtimes)
    snapshot: dict[str, Any] = {
        "role": process_role(),
        "process": process_id(),
        "at": time.time(),
        "engine": _engine_figures(runtimes),
        "feeds": _feed_figures(runtimes),
        "ws": _ws_figures(),
        "saver": None,
    }
    if any(r.saver is not None for r in runtimes) or any(dataclasses.astuple(PROCESS_TOTALS)):
        snapshot["saver"] = dataclasses.asdict(PROCESS_TOTALS)
    return snapshot


# --- publication -----------------------------------------------------------------------------------


def snapshot_key(process: str) -> str:
    return f"{SNAPSHOT_PREFIX}{process}"


def publish_snapshot(client: redis.Redis, snapshot: dict[str, Any], *, ttl_s: float) -> None:
    """Write one process's snapshot (expiring after ``ttl_s``) and prune the index of lapsed ones."""
    key = snapshot_key(snapshot["process"])
    ttl_ms = max(1, int(ttl_s * 1000))
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"role": snapshot["role"], "process": snapshot["process"], "snapshot": json.dumps(snapshot)})
    pipe.pexpire(key, ttl_ms)
    pipe.zadd(SNAPSHOT_INDEX, {key: now_ms + ttl_ms})
    pipe.zremrangebyscore(SNAPSHOT_INDEX, "-inf", now_ms)
    pipe.execute()


def read_snapshots(client: redis.Redis, *, exclude: str = "") -> list[dict[str, Any]]:
    """The snapshots other processes published and that have not expired (not ``exclude``'s)."""
    keys = client.zrange(SNAPSHOT_INDEX, 0, MAX_SNAPSHOTS - 1)
    keys = [k.decode() if isinstance(k, bytes) else k for k in keys]
    keys = [k for k in keys if k != snapshot_key(exclude)]
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "snapshot")
    out = []
    for raw in pipe.execute():
        if raw is None:
            continue  # expired since the index was pruned
        try:
            out.append(json.loads(raw))
        except ValueError:
            logger.warning("metrics: an unreadable process snapshot was skipped")
    return out


class SnapshotPublisher(threading.Thread):
    """Publishes this process's snapshot every ``interval_s`` until ``stop()`` (a daemon thread)."""

    def __init__(self, url: str, interval_s: float) -> None:
        super().__init__(name="metrics-snapshot", daemon=True)
        self.url = url
        self.interval_s = max(0.1, interval_s)
        self.pid = os.getpid()
        self._stop_event = threading.Event()
        self._failing = False

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        try:
            while True:
                self.publish_once(client)
                if self._stop_event.wait(self.interval_s):
                    return
        finally:
            client.close()

    def publish_once(self, client: redis.Redis) -> None:
        try:
            publish_snapshot(client, process_snapshot(), ttl_s=SNAPSHOT_TTL_INTERVALS * self.interval_s)
        except Exception as exc:  # Redis away: try again next interval, say so once
            if not self._failing:
                logger.warning("metrics: publishing this process's snapshot failed (%s); retrying", exc)
            self._failing = True
        else:
            if self._failing:
                logger.info("metrics: publishing this process's snapshot again")
            self._failing = False


def start_snapshot_publisher(role: str) -> SnapshotPublisher | None:
    """Publish this process's snapshot to Redis from now on (stack mode only; once per process).

    The first role given names the process, except that ``worker`` (a Celery worker process)
    becomes ``ingest`` once it runs a stream.
    """
    global _role, _publisher
    with _lock:
        if _role is None or (_role == "worker" and role == "ingest"):
            _role = role
        url = settings.REDIS_URL
        if not url:
            return None
        if _publisher is not None and _publisher.pid == os.getpid() and _publisher.is_alive():
            return _publisher
        _publisher = SnapshotPublisher(url, float(getattr(settings, "METRICS_SNAPSHOT_INTERVAL_S", 5.0)))
        _publisher.start()
        return _publisher


def stop_snapshot_publisher() -> None:
    """Stop publishing (tests); the snapshot expires on its own."""
    global _publisher, _role
    with _lock:
        if _publisher is not None:
            _publisher.stop()
            _publisher.join(timeout=5)
        _publisher = None
        _role = None


# --- figures of the whole deployment ---------------------------------------------------------------


def stream_leases(client: redis.Redis) -> dict[str, str]:
    """provider code -> the worker (``node:pid``) holding its stream lease."""
    keys = [k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=f"{LEASE_PREFIX}*", count=500)]
    if not keys:
        return {}
    holders = client.mget(keys)
    return {
        key[len(LEASE_PREFIX) :]: holder.decode() if isinstance(holder, bytes) else holder
        for key, holder in zip(keys, holders, strict=True)
        if holder is not None
    }


def persist_figures() -> dict[str, Any]:
    """The persist stream's backlog (bars not yet committed) and the oldest one's age in seconds."""
    from ingestion.saver import persist_lag_status

    lag = persist_lag_status(timeout_s=REDIS_TIMEOUT_S)
    return {"pending": lag["pending"], "oldest_age_s": lag["oldest_age_s"] or 0.0}
