"""``manage.py persist_bars [--once]``: the saver in the foreground (stack mode).

Without ``--once`` it saves every ``--interval`` seconds (``PERSIST_INTERVAL_S``) until
SIGINT/SIGTERM, which stop it after the batch in hand is committed and acknowledged. With
``--once`` it saves everything waiting (taking over entries a dead saver left pending for
longer than ``--claim-idle-ms``), prints the counts and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingestion.saver import DEFAULT_BATCH_SIZE, BarSaver, FlushResult
from marketdata.live.store import get_tick_store


def _counts(result: FlushResult) -> str:
    return f"{result.saved} bars saved ({result.claimed} taken over, {result.dropped} dropped)"


class Command(BaseCommand):
    help = "Save closed bars waiting in Redis into the database, continuously or --once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Save what is waiting now, then exit.")
        parser.add_argument("--interval", type=float, default=None, help="Seconds between flushes.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Bars per transaction.")
        parser.add_argument(
            "--claim-idle-ms", type=int, default=None, help="Take over entries pending this long (dead savers)."
        )
        parser.add_argument("--consumer", default=None, help="Consumer name in the group (default host-pid).")

    def handle(
        self,
        *args,
        once: bool,
        interval: float | None,
        batch_size: int,
        claim_idle_ms: int | None,
        consumer: str | None,
        **options,
    ) -> None:
        if not settings.REDIS_URL:
            raise CommandError("persist_bars needs REDIS_URL: the embedded mode saves from its own process.")
        interval = settings.PERSIST_INTERVAL_S if interval is None else interval
        if interval <= 0:
            raise CommandError("--interval must be positive.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if claim_idle_ms is not None and claim_idle_ms < 0:
            raise CommandError("--claim-idle-ms cannot be negative.")
        asyncio.run(self._run(once, interval, batch_size, claim_idle_ms, consumer))

    async def _run(
        self, once: bool, interval: float, batch_size: int, claim_idle_ms: int | None, consumer: str | None
    ) -> None:
        store = get_tick_store()
        saver = BarSaver(store=store, consumer=consumer, batch_size=batch_size, claim_idle_ms=claim_idle_ms)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, saver.stop)
        try:
            if once:
                try:
                    result = await saver.flush()
                except Exception as exc:
                    raise CommandError(f"saving failed, nothing unsaved was acknowledged: {exc}") from exc
                lag = await store.persist_lag()
                self.stdout.write(f"{_counts(result)}; {lag['pending']} still pending.")
                return
            self.stdout.write(
                f"Saving bars every {interval:g}s as consumer {saver.consumer}; Ctrl-C stops after the current batch."
            )
            await saver.run_forever(interval)
            self.stdout.write(f"Stopped: {_counts(saver.totals)}.")
        finally:
            await store.close()
