"""``manage.py backfill_history --provider YF|DHAN --interval 1m|1d [--start --end] [--symbols ...]``.

Also ``--repair-gaps``: refill minutes missing inside past sessions (``--provider`` optional).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ingestion.backfill import BackfillError, backfill_plan, backfill_run, repair_gaps


class Command(BaseCommand):
    help = "Fetch price history from Yahoo or Dhan into the database (idempotent), or repair gaps."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--provider", help="Provider code: YF or DHAN (optional with --repair-gaps).")
        parser.add_argument("--interval", choices=["1m", "1d"], help="1m (minute bars) or 1d (daily bars).")
        parser.add_argument("--start", help="First exchange-local date, YYYY-MM-DD.")
        parser.add_argument("--end", help="Last exchange-local date, YYYY-MM-DD (default today).")
        parser.add_argument(
            "--symbols", nargs="+", help="Symbols (AAPL, NSE:RELIANCE); default: every instrument streamed."
        )
        parser.add_argument("--progress", action="store_true", help="Show a progress bar even when not on a terminal.")
        parser.add_argument(
            "--repair-gaps", action="store_true", help="Refill minutes missing inside past sessions instead."
        )

    def handle(self, *args, **options) -> None:
        try:
            if options["repair_gaps"]:
                self._repair(options)
            else:
                self._backfill(options)
        except BackfillError as exc:
            raise CommandError(str(exc)) from exc

    def _backfill(self, options) -> None:
        if not options["provider"] or not options["interval"]:
            raise CommandError("--provider and --interval are required (or use --repair-gaps).")
        plan = backfill_plan(
            provider_code=options["provider"],
            interval=options["interval"],
            start=options["start"],
            end=options["end"],
            symbols=options["symbols"],
        )
        for warning in plan.warnings:
            self.stderr.write(self.style.WARNING(warning))
        show = options["progress"] or self.stderr.isatty()
        bar = tqdm(total=len(plan.targets), file=_Raw(self.stderr), unit="instrument", disable=not show, ascii=True)

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        try:
            result = backfill_run(plan=plan, progress=progress)
        finally:
            bar.close()
        for error in result["errors"]:
            self.stderr.write(self.style.ERROR(error))
        self.stdout.write(
            f"{result['provider']} {result['interval']} {result['start']}..{result['end']}: "
            f"{result['rows']} rows for {result['instruments'] - len(result['errors'])}/{result['instruments']} "
            "instruments."
        )
        if result["errors"] and len(result["errors"]) == result["instruments"]:
            raise CommandError("Every instrument failed.")

    def _repair(self, options) -> None:
        result = repair_gaps(
            start=options["start"], end=options["end"], symbols=options["symbols"], provider_code=options["provider"]
        )
        for error in result["errors"]:
            self.stderr.write(self.style.ERROR(error))
        self.stdout.write(
            f"{result['instruments']} instruments checked: {result['missing_minutes']} minutes missing, "
            f"{result['filled']} filled."
        )


class _Raw:
    """The command's stderr for tqdm: written as is (OutputWrapper would end every write with a newline)."""

    def __init__(self, wrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()
