"""``manage.py rollup_daily [--exchange NSE] [--date YYYY-MM-DD]``: intraday bars into daily bars.

Without ``--date``: every closed session of the last days not rolled up yet (what the
scheduled task does). With ``--date``: that trading date, rolled up again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.core.management.base import BaseCommand, CommandError

from exchanges.models import Exchange
from exchanges.selectors import exchange_session
from ingestion.rollup import rollup_day, rollup_due, session_window


class Command(BaseCommand):
    help = "Roll closed sessions' 1-minute bars into daily bars (provider daily history is never overwritten)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--exchange", action="append", dest="exchanges", metavar="CODE", help="NSE, NYSE, ...")
        parser.add_argument("--date", help="Trading date (exchange-local), YYYY-MM-DD.")

    def handle(self, *args, exchanges: list[str] | None, date: str | None, **options) -> None:
        if exchanges:
            codes = {code.upper() for code in exchanges}
            known = set(Exchange.objects.filter(code__in=codes).values_list("code", flat=True))
            if missing := sorted(codes - known):
                raise CommandError(f"Unknown exchange code(s): {', '.join(missing)}")
        if date is None:
            result = rollup_due(exchange_codes=exchanges)
            for entry in result["rolled"]:
                self.stdout.write(f"{entry['exchange']} {entry['date']}: {entry['rows']} daily bars")
            for error in result["errors"]:
                self.stderr.write(self.style.ERROR(error))
            if not result["rolled"]:
                self.stdout.write("Nothing to roll up.")
            return
        day = _parse(date)
        selected = Exchange.objects.filter(is_active=True).order_by("code")
        if exchanges:
            selected = selected.filter(code__in=[code.upper() for code in exchanges])
        now = datetime.now(UTC)
        for exchange in selected:
            try:
                session = exchange_session(exchange=exchange, date=day)
            except ValueError as exc:
                raise CommandError(f"{exchange.code}: {exc}") from exc
            if session is None:
                self.stdout.write(f"{exchange.code} {day}: no session")
                continue
            if session_window(exchange=exchange, session=session).end > now:
                raise CommandError(f"{exchange.code} {day}: the session has not closed yet.")
            rows = rollup_day(exchange=exchange, date=day)
            self.stdout.write(f"{exchange.code} {day}: {rows} daily bars")


def _parse(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--date: '{value}' is not a valid date (YYYY-MM-DD).") from None
