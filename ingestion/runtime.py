"""Running the live pipeline in a process: engine + provider manager (+ saver when embedded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections

from core.gcfreeze import freeze_after_startup
from ingestion import metrics
from ingestion.engine import Engine
from ingestion.manager import ProviderManager
from ingestion.saver import BarSaver
from marketdata.live.protocol import ChannelLayerPublisher
from marketdata.live.store import get_tick_store

logger = logging.getLogger(__name__)


class MarketRuntime:
    """The engine, its provider manager and optionally the saver, started and stopped together."""

    def __init__(
        self,
        *,
        provider_codes: list[str] | None = None,
        with_saver: bool = False,
        with_rollup: bool = False,
        refresh_s: float = 10.0,
    ) -> None:
        self.store = get_tick_store()
        self.engine = Engine(store=self.store, publisher=ChannelLayerPublisher())
        self.manager = ProviderManager(engine=self.engine, provider_codes=provider_codes, refresh_s=refresh_s)
        self.saver = BarSaver(store=self.store) if with_saver else None
        self._saver_task: asyncio.Task | None = None
        # The embedded mode has no Celery beat: it rolls closed sessions up into daily bars itself.
        self.with_rollup = with_rollup
        self._rollup_task: asyncio.Task | None = None

    async def start(self) -> None:
        metrics.runtime_started(self)
        metrics.start_snapshot_publisher("ingest")
        await self.manager.start()
        if self.saver is not None:
            self._saver_task = asyncio.create_task(self.saver.run_forever(settings.PERSIST_INTERVAL_S))
        if self.with_rollup:
            self._rollup_task = asyncio.create_task(rollup_forever(settings.ROLLUP_INTERVAL_S))
        logger.info("market runtime started: %s", ", ".join(self.manager.clients) or "no providers")
        freeze_after_startup("market runtime")

    async def stop(self) -> None:
        metrics.runtime_stopped(self)
        await self.manager.stop()
        if self._rollup_task is not None:
            self._rollup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rollup_task
        if self._saver_task is not None:
            self._saver_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver_task
            with contextlib.suppress(Exception):
                await self.saver.flush()  # what the engine closed on the way out
        logger.info("market runtime stopped")


async def rollup_forever(interval_s: float) -> None:
    """``rollup_due`` now and then every ``interval_s``, in a worker thread (it is ORM code).

    A failing round is logged and the next one tries again: the rollup catches up on every
    closed session of its look-back window, so nothing is lost by a missed round.
    """
    from ingestion.rollup import rollup_due

    while True:
        try:
            result = await in_daemon_thread(rollup_due, name="daily-rollup")
        except Exception:
            logger.exception("daily rollup failed; retrying in %.0f s", interval_s)
        else:
            if result["rolled"]:
                logger.info("daily rollup: %s", ", ".join(f"{r['exchange']} {r['date']}" for r in result["rolled"]))
        await asyncio.sleep(interval_s)


def in_daemon_thread[T](func: Callable[[], T], *, name: str) -> asyncio.Future[T]:
    """``func()`` (ORM code) in a daemon thread of its own, its result awaitable from the loop.

    Unlike the loop's default executor, which ``asyncio.run`` joins on the way out, a daemon
    thread never holds up a shutdown: the first rollup builds every exchange's calendar (about
    20 s here, 10 of them KRX's lunar holidays), and Ctrl-C must not wait for that. Cancelling
    the future abandons the result; an unfinished rollup's transaction is rolled back at exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result=None, error: BaseException | None = None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def target() -> None:
        close_old_connections()
        try:
            outcome = {"result": func()}
        except Exception as exc:
            outcome = {"error": exc}
        finally:
            close_old_connections()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(lambda: settle(**outcome))

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


async def run_until_signalled(runtime: MarketRuntime, stop: asyncio.Event | None = None) -> None:
    """Start, wait for SIGINT/SIGTERM (or ``stop``), then stop cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    try:
        await stop.wait()
    finally:
        await runtime.stop()
