"""``manage.py ingest [--provider CODE ...]``: the ingestion engine in the foreground (stack mode)."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingestion.diagnostics import stream_diagnosis
from ingestion.models import Provider
from ingestion.runtime import MarketRuntime, run_until_signalled
from ingestion.streams.reporter import RuntimeStatusReporter


class Command(BaseCommand):
    help = "Stream live quotes from the active providers (or the ones named) until interrupted."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--provider", action="append", dest="providers", metavar="CODE", help="YF, DHAN, SIM...")
        parser.add_argument("--with-saver", action="store_true", help="Also persist closed bars in this process.")
        parser.add_argument("--refresh", type=float, default=10.0, help="Seconds between routing refreshes.")

    def handle(self, *args, providers: list[str] | None, with_saver: bool, refresh: float, **options) -> None:
        if providers:
            providers = [p.upper() for p in providers]
            known = set(Provider.objects.filter(code__in=providers).values_list("code", flat=True))
            missing = sorted(set(providers) - known)
            if missing:
                raise CommandError(f"Unknown provider code(s): {', '.join(missing)}")
        for line in stream_diagnosis(provider_codes=providers):
            self.stderr.write(f"Not streaming: {line}")
        runtime = MarketRuntime(provider_codes=providers, with_saver=with_saver, refresh_s=refresh)
        self.stdout.write(f"Streaming ({', '.join(providers) if providers else 'all active providers'}); Ctrl-C stops.")
        if settings.REDIS_URL:
            # The same status records as a Celery stream, so the admin and the API see this one.
            asyncio.run(RuntimeStatusReporter(runtime).serve())
        else:
            asyncio.run(run_until_signalled(runtime))
