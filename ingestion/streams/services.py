"""Start, stop, status and the watchdog of the provider streams (called by the API, admin, tasks)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from redis.exceptions import RedisError

from ingestion.dhan_tokens import dhan_token_status
from ingestion.models import Provider
from ingestion.streaming import MAPPING_OPTIONAL
from instruments.models import Instrument

from .keys import (
    LAPSED,
    StreamError,
    StreamUnavailable,
    lease_key,
    redis_client,
    redis_errors,
    starting_key,
    status_key,
    stop_key,
    worker_stop_key,
)

logger = logging.getLogger(__name__)

WORKER_STOP_TTL_S = 120


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


# --- services: start, stop, status, watchdog ---------------------------------------------------------


RUN_STREAM_TASK = "ingestion.run_stream"  # ingestion.tasks.run_stream; services never import tasks


def _enqueue(code: str) -> None:
    from celery import current_app

    # A start not picked up within the dedupe window is dropped: the watchdog queues a fresh one.
    current_app.send_task(RUN_STREAM_TASK, args=[code], queue="streams", expires=settings.STREAM_START_DEDUPE_S)


def _queue_start(client: redis.Redis, code: str, by: str, enqueue: Callable[[str], None]) -> bool:
    if not client.set(starting_key(code), by, nx=True, ex=settings.STREAM_START_DEDUPE_S):
        return False
    try:
        enqueue(code)
    except Exception as exc:  # the broker is away: let the next attempt try again
        client.delete(starting_key(code))
        raise StreamUnavailable(f"could not queue the stream of {code}: {exc}") from exc
    return True


def stream_start(*, provider: Provider, enqueue: Callable[[str], None] | None = None) -> bool:
    """Mark the provider's stream desired and queue it unless it runs; True when a start was queued."""
    if not provider.is_active:
        raise StreamError(f"Provider {provider.code} is inactive; activate it before starting its stream")
    client = redis_client()
    with redis_errors():
        client.delete(stop_key(provider.code))
        if client.exists(lease_key(provider.code)):
            return False
        queued = _queue_start(client, provider.code, "start", enqueue or _enqueue)
    logger.info("stream %s: start requested (%s)", provider.code, "queued" if queued else "already queued")
    return queued


def stream_stop(*, provider: Provider) -> None:
    """Stop the provider's stream and keep it stopped (the watchdog leaves it) until started again."""
    client = redis_client()
    with redis_errors():
        client.set(stop_key(provider.code), _now_iso())
    logger.info("stream %s: stop requested", provider.code)


def _parse_status(code: str, raw: dict[str, str], holder: str | None, starting: bool, stopped: bool) -> dict:
    def number(name: str, kind=float):
        value = raw.get(name)
        return kind(float(value)) if value not in (None, "") else None

    def moment(name: str, scale: float = 1.0):
        value = number(name)
        return datetime.fromtimestamp(value / scale, UTC) if value is not None else None

    running = holder is not None
    mine = running and raw.get("worker") == holder
    if running:
        state = "stopping" if stopped else "running"
    elif starting and not stopped:
        state = "starting"
    else:
        state = "stopped"
    try:
        clients = json.loads(raw.get("clients") or "[]") if mine else []
    except ValueError:
        clients = []
    degraded = next((c.get("degraded_reason") for c in clients if c.get("degraded_reason")), "")
    return {
        "provider": code,
        "state": state,
        "running": running,
        "desired": not stopped,
        "worker": holder,
        "pid": number("pid", int) if mine else None,
        "started_at": moment("started_at") if mine else None,
        "updated_at": moment("updated_at") if mine else None,
        "last_tick_at": moment("last_tick_ms", 1000.0) if mine else None,
        "ticks_per_second": number("ticks_per_second") if mine else None,
        "ticks": number("ticks", int) if mine else None,
        "healthy": raw.get("healthy") == "1" if mine else None,
        "degraded_reason": degraded,
        "stopped_at": moment("stopped_at") if not running else None,
        "stop_reason": (raw.get("stop_reason") or "") if not running else "",
        "last_error": raw.get("last_error") or "",
        "last_error_at": moment("last_error_at"),
        "clients": clients,
        "error": "",
    }


def _unknown_status(code: str, error: str) -> dict:
    return {
        **_parse_status(code, {}, None, False, False),
        "state": "unknown",
        "running": None,
        "desired": None,
        "error": error,
    }


def stream_statuses(*, providers: Iterable[Provider]) -> dict[str, dict]:
    """The stream status of each provider by code, in one Redis round trip.

    ``state`` is running, stopping (asked to stop, not yet stopped), starting (queued),
    stopped, or unknown when Redis cannot be asked (then ``error`` says why): a status page
    never fails because Redis is away. ``worker`` is the lease holder; the figures come from
    the holder's latest report.
    """
    providers = list(providers)
    codes = [p.code for p in providers]
    if not codes:
        return {}
    try:
        client = redis_client()
        pipe = client.pipeline(transaction=False)
        for code in codes:
            pipe.hgetall(status_key(code))
            pipe.get(lease_key(code))
            pipe.exists(starting_key(code))
            pipe.exists(stop_key(code))
        replies = pipe.execute()
    except (StreamUnavailable, RedisError) as exc:
        statuses = {code: _unknown_status(code, str(exc)) for code in codes}
    else:
        statuses = {code: _parse_status(code, *replies[4 * i : 4 * i + 4]) for i, code in enumerate(codes)}
    for provider in providers:
        # Dhan's access token expires daily: its expiry and the last renewal belong to the status.
        is_dhan = provider.kind == Provider.Kind.DHAN
        statuses[provider.code]["token"] = dhan_token_status(provider=provider) if is_dhan else None
    return statuses


def stream_status(*, provider: Provider) -> dict:
    """One provider's stream status (see ``stream_statuses``)."""
    return stream_statuses(providers=[provider])[provider.code]


def streamable_provider_codes() -> list[str]:
    """Active providers that are a candidate for at least one instrument to stream (see ``stream_plan``)."""
    streamable = Instrument.objects.filter(
        is_active=True, record_data=True, blacklisted=False, delisted=False, exchange__is_active=True
    )
    on_exchange = streamable.filter(
        exchange__provider_mappings__provider=OuterRef("pk"), exchange__provider_mappings__is_active=True
    )
    mapped = on_exchange.filter(provider_mappings__provider=OuterRef("pk"), provider_mappings__is_active=True)
    return list(
        Provider.objects.filter(is_active=True)
        .filter(Q(Exists(on_exchange), kind__in=MAPPING_OPTIONAL) | Q(Exists(mapped)))
        .order_by("code")
        .values_list("code", flat=True)
    )


def stream_watchdog(*, enqueue: Callable[[str], None] | None = None) -> list[str]:
    """Queue the stream of every provider that should stream and whose lease has lapsed.

    Skips providers an operator stopped and starts already queued; returns the codes queued.
    """
    client = redis_client()
    codes = streamable_provider_codes()
    queued: list[str] = []
    with redis_errors():
        pipe = client.pipeline(transaction=False)
        for code in codes:
            pipe.exists(lease_key(code))
            pipe.exists(stop_key(code))
        replies = pipe.execute()
        lapsed = client.register_script(LAPSED)
        for i, code in enumerate(codes):
            leased, stopped = replies[2 * i], replies[2 * i + 1]
            if leased or stopped:
                continue
            if lapsed(
                keys=[lease_key(code), status_key(code)], args=["lease lapsed: the worker was lost", time.time()]
            ):
                logger.warning("stream %s: its worker vanished without stopping it", code)
            if _queue_start(client, code, "watchdog", enqueue or _enqueue):
                queued.append(code)
    if queued:
        logger.info("watchdog: queued the streams of %s", ", ".join(queued))
    return queued


def worker_shutdown_announce(*, node: str) -> None:
    """Tell the streams of a Celery worker that is shutting down to stop and hand over now."""
    with redis_errors():
        redis_client().set(worker_stop_key(node), _now_iso(), ex=WORKER_STOP_TTL_S)


def worker_shutdown_clear(*, node: str) -> None:
    """A worker (re)started under this name: its streams may run again."""
    with redis_errors():
        redis_client().delete(worker_stop_key(node))
