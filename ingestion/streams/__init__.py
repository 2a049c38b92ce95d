"""Provider streams in Celery workers: one lease per provider, a watchdog, start/stop/status.

A stream runs the ingestion engine for one provider (``MarketRuntime``) inside a worker of
the ``streams`` queue. Redis keys (``REDIS_URL``):

- ``stream:lease:{code}``  the id of the worker streaming the provider (``node:pid``); taken
  with SET NX PX ``STREAM_LEASE_TTL_S``, renewed every TTL/3 and released by its holder only
  (compare-and-set scripts). A stream that loses its lease, or cannot renew it before it could
  lapse, stops at once: at most one stream per provider across all workers.
- ``stream:stop:{code}``  present while an operator wants the stream stopped. The running
  stream stops cleanly, the watchdog leaves the provider alone, and only a start clears it.
  Absent means desired: every active provider with instruments to stream runs by default.
- ``stream:starting:{code}``  set for ``STREAM_START_DEDUPE_S`` when a start was queued, so the
  watchdog and the API never queue the same start twice.
- ``stream:status:{code}``  a hash the holder rewrites every ``STREAM_STATUS_INTERVAL_S``.
- ``stream:worker-stop:{node}``  set while a Celery worker shuts down: its streams stop and
  release their leases at once, and the watchdog restarts them in another worker.
"""

from .keys import StreamError, StreamLease, StreamUnavailable
from .runner import StreamOutcome, StreamRunner, provider_stream_plan, stream_run
from .services import (
    stream_start,
    stream_status,
    stream_statuses,
    stream_stop,
    stream_watchdog,
    streamable_provider_codes,
    worker_shutdown_announce,
    worker_shutdown_clear,
)

__all__ = [
    "StreamError",
    "StreamLease",
    "StreamOutcome",
    "StreamRunner",
    "StreamUnavailable",
    "provider_stream_plan",
    "stream_run",
    "stream_start",
    "stream_status",
    "stream_statuses",
    "stream_stop",
    "stream_watchdog",
    "streamable_provider_codes",
    "worker_shutdown_announce",
    "worker_shutdown_clear",
]
