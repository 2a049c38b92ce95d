"""Celery tasks of the ingestion app: thin wrappers that check their arguments and call services.

``run_stream`` goes to the ``streams`` queue (long-running, no time limit, acknowledged on
receipt: the lease and the watchdog handle a lost worker); everything else runs on
``default`` with its own time limits. Bad arguments raise ``TaskArgumentError`` (or the
service's own ``ValueError``) before anything is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings

from ingestion import streams

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 100_000


class TaskArgumentError(ValueError):
    """A task was called with arguments it cannot work with."""


def _whole_number(name: str, value: object, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise TaskArgumentError(f"{name} must be a whole number from {minimum} to {maximum}, got {value!r}")
    return value


@shared_task(
    name="ingestion.run_stream",
    bind=True,
    acks_late=False,
    time_limit=None,
    soft_time_limit=None,
)
def run_stream(self, provider_code: str) -> dict:
    """Stream one provider until stopped; returns how the run ended (``StreamError`` when refused)."""
    return streams.stream_run(provider_code=provider_code, node=self.request.hostname or "")


@shared_task(name="ingestion.stream_watchdog", ignore_result=True, store_errors_even_if_ignored=True, time_limit=30)
def stream_watchdog() -> list[str]:
    """Queue the streams whose lease lapsed (beat runs this every STREAM_WATCHDOG_INTERVAL_S)."""
    return streams.stream_watchdog()


@shared_task(
    name="ingestion.persist_bars",
    ignore_result=True,
    store_errors_even_if_ignored=True,
    soft_time_limit=240,
    time_limit=300,
)
def persist_bars(batch_size: int = 5000) -> dict:
    """Save every closed bar waiting in the persist stream (and those a dead saver left pending)."""
    batch_size = _whole_number("batch_size", batch_size, minimum=1, maximum=MAX_BATCH_SIZE)
    if not settings.REDIS_URL:
        raise TaskArgumentError("persist_bars needs REDIS_URL: the embedded mode saves from its own process")
    return asyncio.run(_flush(batch_size))


async def _flush(batch_size: int) -> dict:
    from ingestion.saver import BarSaver
    from marketdata.live.store import get_tick_store

    store = get_tick_store()
    try:
        result = await BarSaver(store=store, batch_size=batch_size).flush()
    finally:
        await store.close()
    return dataclasses.asdict(result)


@shared_task(
    name="ingestion.daily_rollup",
    ignore_result=True,
    store_errors_even_if_ignored=True,
    soft_time_limit=540,
    time_limit=600,
)
def daily_rollup() -> dict:
    """Roll up every closed session not rolled up yet (the service decides what is due)."""
    from ingestion.rollup import rollup_due

    return rollup_due()


@shared_task(name="ingestion.renew_dhan_tokens", ignore_result=True, store_errors_even_if_ignored=True, time_limit=120)
def renew_dhan_tokens() -> list[dict]:
    """Renew the Dhan access tokens close to expiry (beat runs this every DHAN_TOKEN_CHECK_S)."""
    from ingestion.dhan_tokens import dhan_tokens_renew_due

    return [{**r, "expires_at": str(r["expires_at"])} if "expires_at" in r else r for r in dhan_tokens_renew_due()]


@shared_task(name="ingestion.backfill_history", soft_time_limit=3300, time_limit=3600)
def backfill_history(
    provider_code: str,
    interval: str,
    start: str | None = None,
    end: str | None = None,
    symbols: list[str] | None = None,
) -> dict:
    """Backfill history from YF or DHAN at 1m or 1d (dates as ISO strings); idempotent upserts."""
    from ingestion.backfill import backfill

    return backfill(provider_code=provider_code, interval=interval, start=start, end=end, symbols=symbols)


@shared_task(name="ingestion.repair_gaps", soft_time_limit=3300, time_limit=3600)
def repair_gaps(provider_code: str | None = None) -> dict:
    """Find minutes missing inside past sessions and backfill them (nightly)."""
    from ingestion.backfill import repair_gaps as repair

    return repair(provider_code=provider_code)


@shared_task(name="ingestion.populate", soft_time_limit=3300, time_limit=3600)
def populate(job_id: int) -> dict:
    """Run one queued ``/populate`` job (``ingestion.jobs``); its progress and errors go to the job row."""
    job_id = _whole_number("job_id", job_id, minimum=1, maximum=2**63 - 1)
    from ingestion.jobs import job_run

    result = job_run(job_id=job_id)
    if result["state"] is None:
        raise TaskArgumentError(f"No populate job {job_id}")
    return result


# --- a worker that shuts down hands its streams over at once -----------------------------------------


@worker_shutting_down.connect
def _hand_over_streams(sender: str, **kwargs) -> None:
    # A warm shutdown waits for running tasks, and a stream never ends by itself: tell this
    # worker's streams to stop and release their leases so the watchdog restarts them elsewhere.
    if settings.REDIS_URL:
        try:
            streams.worker_shutdown_announce(node=sender)
        except streams.StreamError as exc:
            logger.warning("could not tell the streams of %s to stop: %s", sender, exc)


@worker_ready.connect
def _allow_streams(sender, **kwargs) -> None:
    if settings.REDIS_URL:
        try:
            streams.worker_shutdown_clear(node=sender.hostname)
        except streams.StreamError as exc:
            logger.warning("could not clear the shutdown flag of %s: %s", sender.hostname, exc)
