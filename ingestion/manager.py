"""ProviderManager: runs the feed clients and routes each instrument to one provider.

Every ``refresh_s`` (default 10 s) it re-reads the stream plan from the database, so changes
made in the admin take effect without a restart, and re-evaluates provider health: when the
serving provider has not been streaming for ``FAILOVER_AFTER_S``, its instruments move to
the next candidate; when a better-ranked provider is healthy again, they move back. One
provider serves an instrument at a time (the engine drops ticks from any other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections

from core.db import db_sync_to_async
from ingestion.engine import Engine, InstrumentMeta
from ingestion.provider_urls import provider_url_problems
from ingestion.providers.base import FeedClient, FeedStatus, Subscription
from ingestion.streaming import ProviderSpec, StreamPlan, stream_plan

logger = logging.getLogger(__name__)


def client_class(kind: str) -> type[FeedClient]:
    """The feed client implementing a provider kind."""
    if kind == "simulated":
        from ingestion.providers.simulated import SimulatedFeedClient

        return SimulatedFeedClient
    if kind == "replay":
        from ingestion.providers.replay import ReplayFeedClient

        return ReplayFeedClient
    if kind == "yahoo":
        from ingestion.providers.yahoo import YahooFeedClient

        return YahooFeedClient
    if kind == "dhan":
        from ingestion.providers.dhan import DhanFeedClient

        return DhanFeedClient
    raise ValueError(f"unknown provider kind {kind!r}")


async def _exchange_open(exchange_code: str) -> bool:
    """Whether an exchange is in session now (for the simulator's ``follow_sessions``)."""
    from datetime import UTC, datetime

    from exchanges.models import Exchange
    from exchanges.selectors import exchange_is_open

    def check() -> bool:
        close_old_connections()
        exchange = Exchange.objects.filter(code=exchange_code).first()
        return exchange is not None and exchange_is_open(exchange=exchange, at=datetime.now(UTC))

    return await db_sync_to_async(check)()


class ProviderManager:
    """Owns the feed clients of this process and the instrument -> provider assignment."""

    def __init__(
        self,
        *,
        engine: Engine,
        provider_codes: list[str] | None = None,
        refresh_s: float = 10.0,
        failover_after_s: float | None = None,
        plan_loader: Callable[..., StreamPlan] = stream_plan,
        retry_failed_after_s: float = 300.0,
    ) -> None:
        self.engine = engine
        self.provider_codes = provider_codes
        self.refresh_s = refresh_s
        self.failover_after_s = settings.FAILOVER_AFTER_S if failover_after_s is None else failover_after_s
        self.plan_loader = plan_loader
        self.retry_failed_after_s = retry_failed_after_s
        self.plan = StreamPlan({}, {}, {})
        self.clients: dict[str, FeedClient] = {}
        self.specs: dict[str, ProviderSpec] = {}
        self.assignment: dict[int, str] = {}  # instrument id -> provider code
        self._consumers: dict[str, asyncio.Task] = {}
        self._loop_task: asyncio.Task | None = None
        self._token_task: asyncio.Task | None = None
        self._started_at: dict[str, float] = {}

    # --- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Load the plan, start clients and the engine, then keep refreshing in the background."""
        await self.engine.start()
        await self.refresh()
        self._loop_task = asyncio.create_task(self._refresh_forever(), name="provider-manager")
        self._token_task = asyncio.create_task(self._renew_tokens_forever(), name="provider-tokens")

    async def stop(self) -> None:
        """Stop refreshing, disconnect every client and flush the engine."""
        for task in (self._loop_task, self._token_task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for code in list(self.clients):
            await self._stop_client(code)
        await self.engine.stop()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception:
                logger.exception("provider manager refresh failed; keeping the current routing")

    async def _renew_tokens_forever(self) -> None:
        """Renew the access tokens of the Dhan feeds this process runs before they expire.

        Every process that streams Dhan does it (Celery stream, ``ingest``, ``runmarket``), so
        the embedded mode needs no beat; the renewed token reaches the client at the next
        refresh, which restarts it with the new credentials.
        """
        from ingestion.dhan_tokens import dhan_tokens_renew_due

        def renew(codes: list[str]) -> list[dict]:
            close_old_connections()
            return dhan_tokens_renew_due(provider_codes=codes)

        while True:
            codes = [code for code, client in self.clients.items() if client.kind == "dhan"]
            if codes:
                try:
                    await db_sync_to_async(renew)(codes)
                except Exception:
                    logger.exception("Dhan token renewal failed: the check itself crashed")
            await asyncio.sleep(settings.DHAN_TOKEN_CHECK_S)

    # --- routing ------------------------------------------------------------------------
    def is_down(self, code: str, now: float | None = None) -> bool:
        """A provider is down once it has not been streaming for ``failover_after_s``, or at
        once when it is connected but degraded (every frame refused for the client's own
        ``refused_unhealthy_s``, which is already its grace period)."""
        client = self.clients.get(code)
        if client is None:
            return True
        if client.status == FeedStatus.STREAMING:
            return not client.healthy
        now = time.monotonic() if now is None else now
        if client.status == FeedStatus.FAILED:
            return True
        since = max(client.stats.status_changed_at, self._started_at.get(code, 0.0))
        return now - since >= self.failover_after_s

    def choose(self, instrument_id: int) -> tuple[str, Subscription] | None:
        """The best-ranked candidate that is not down (else the best-ranked one, to keep trying)."""
        # A provider whose client could not even be built is no candidate at all.
        candidates = [(c, s) for c, s in self.plan.candidates.get(instrument_id, []) if c in self.clients]
        for code, sub in candidates:
            if not self.is_down(code):
                return code, sub
        return candidates[0] if candidates else None

    async def refresh(self) -> None:
        """Re-read the database, (re)start clients, and move instruments where health says."""
        plan = await db_sync_to_async(self._load_plan)()
        self.plan = plan
        now = time.monotonic()
        for code in [c for c in self.clients if c not in plan.providers or plan.providers[c] != self.specs.get(c)]:
            await self._stop_client(code)  # removed, deactivated or reconfigured
        for code in [c for c, client in self.clients.items() if self._retry_due(client, now)]:
            # A feed that gave up (a crash, or credentials since fixed at the provider) gets
            # another try now and then; slow enough never to hammer the provider.
            logger.info(
                "provider %s failed %.0fs ago (%s); restarting it",
                code,
                self.retry_failed_after_s,
                self.clients[code].last_error,
            )
            await self._stop_client(code)
        wanted = {code for cands in plan.candidates.values() for code, _ in cands}
        for code in wanted - set(self.clients):
            try:
                await self._start_client(plan.providers[code])
            except Exception:  # one bad settings row must not stop the routing of all the others
                logger.exception("provider %s could not be started; its instruments go elsewhere", code)
        for code in set(self.clients) - wanted:
            await self._stop_client(code)

        self.engine.set_instruments(
            InstrumentMeta(iid, cands[0][1].symbol, cands[0][1].exchange, plan.timezones.get(iid, "UTC"))
            for iid, cands in plan.candidates.items()
        )
        new_assignment: dict[int, tuple[str, Subscription]] = {}
        for iid in plan.candidates:
            choice = self.choose(iid)
            if choice is not None:
                new_assignment[iid] = choice
        await self._apply(new_assignment)

    def _retry_due(self, client: FeedClient, now: float) -> bool:
        return client.status == FeedStatus.FAILED and now - client.stats.status_changed_at >= self.retry_failed_after_s

    def _load_plan(self) -> StreamPlan:
        # Runs in a worker thread that keeps its connection between refreshes: replace it when
        # it broke (a database restart) or grew old, as Django does between requests.
        close_old_connections()
        return self.plan_loader(provider_codes=self.provider_codes)

    def _probes(self, new: dict[int, tuple[str, Subscription]]) -> dict[str, set[int]]:
        """Instruments a degraded provider keeps subscribed after they moved elsewhere.

        A degraded feed can only prove it recovered by accepting a tick, so it keeps its
        instruments as a probe (the engine drops its ticks while another provider serves them);
        the first tick accepted makes it healthy and the instruments move back.
        """
        probes: dict[str, set[int]] = {}
        for code, client in self.clients.items():
            if client.status != FeedStatus.STREAMING or client.healthy:
                continue
            for iid, current in client.subscriptions.items():
                if iid in new and (code, current) in self.plan.candidates.get(iid, []):
                    probes.setdefault(code, set()).add(iid)
        return probes

    async def _apply(self, new: dict[int, tuple[str, Subscription]]) -> None:
        removals: dict[str, list[int]] = {}
        additions: dict[str, list[Subscription]] = {}
        probes = self._probes(new)
        for iid, code in self.assignment.items():
            if (iid not in new or new[iid][0] != code) and iid not in probes.get(code, ()):
                removals.setdefault(code, []).append(iid)
        for code, client in self.clients.items():
            # Probes left behind: the instrument left the plan or the provider recovered.
            for iid in client.subscriptions:
                mine = self.assignment.get(iid) == code or (iid in new and new[iid][0] == code)
                if not mine and iid not in probes.get(code, ()):
                    removals.setdefault(code, []).append(iid)
        for iid, (code, sub) in new.items():
            client = self.clients.get(code)
            current = client.subscriptions.get(iid) if client else None
            if self.assignment.get(iid) != code or current != sub:
                if current is not None and current != sub:
                    removals.setdefault(code, []).append(iid)
                additions.setdefault(code, []).append(sub)
        for code, ids in removals.items():
            if code in self.clients:
                await self.clients[code].unsubscribe(ids)
        for code, subs in additions.items():
            await self.clients[code].subscribe(subs)
        moved = [iid for iid in new if iid in self.assignment and self.assignment[iid] != new[iid][0]]
        if moved:
            logger.warning("moved %d instruments to other providers (failover/failback)", len(moved))
        self.assignment = {iid: code for iid, (code, _sub) in new.items()}
        self.engine.strict_routing = True
        self.engine.assigned.clear()
        self.engine.assigned.update(self.assignment)

    # --- clients ------------------------------------------------------------------------
    def build_client(self, spec: ProviderSpec) -> FeedClient:
        if problems := provider_url_problems(spec.kind, spec.settings):
            # A row written around the services' checks: its credentials must not follow the URL.
            raise ValueError(f"provider {spec.code}: {' '.join(problems)}")
        cls = client_class(spec.kind)
        kwargs = {
            "code": spec.code,
            "settings": spec.settings,
            "credentials": spec.credentials,
            "refused_unhealthy_s": settings.FEED_REFUSED_UNHEALTHY_S,
        }
        if spec.kind == "simulated":
            kwargs["session_check"] = _exchange_open
        return cls(**kwargs)

    async def _start_client(self, spec: ProviderSpec) -> None:
        client = self.build_client(spec)
        self.clients[spec.code] = client
        self.specs[spec.code] = spec
        self._started_at[spec.code] = time.monotonic()
        await client.connect()
        self._consumers[spec.code] = asyncio.create_task(self.engine.consume(client), name=f"engine-{spec.code}")
        logger.info("provider %s (%s) started", spec.code, spec.kind)

    async def _stop_client(self, code: str) -> None:
        client = self.clients.pop(code, None)
        self.specs.pop(code, None)
        task = self._consumers.pop(code, None)
        if client is not None:
            await client.disconnect()
        if task is not None:
            # Let the engine take what the client already queued before the consumer goes.
            leftovers = client.get_nowait_batch(1_000_000) if client else []
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if leftovers:
                await self.engine.process(leftovers)
        self.assignment = {iid: c for iid, c in self.assignment.items() if c != code}
        logger.info("provider %s stopped", code)

    def status(self) -> list[dict]:
        """Each running client's status plus how many instruments it serves."""
        counts: dict[str, int] = {}
        for code in self.assignment.values():
            counts[code] = counts.get(code, 0) + 1
        return [{**client.status_dict(), "serving": counts.get(code, 0)} for code, client in self.clients.items()]
