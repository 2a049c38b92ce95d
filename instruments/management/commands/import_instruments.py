"""``manage.py import_instruments``: load instruments from Dhan's scrip master or a plain CSV."""

from __future__ import annotations

import csv
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from instruments.importers import InstrumentImportError, instruments_import, open_source

MAX_REPORTED_ERRORS = 50


class Command(BaseCommand):
    help = (
        "Import instruments and provider mappings from a local file or an http(s) URL "
        "(public hosts only, unless IMPORT_URL_ALLOWED_HOSTS names it). "
        "--format dhan reads Dhan's scrip master (NSE/BSE equities and indices; --derivatives adds "
        "futures and options); --format csv reads 'exchange,symbol,name,type,sector,isin' with a header. "
        "Malformed rows are reported by line number and skipped; re-importing changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", metavar="PATH_OR_URL")
        parser.add_argument("--format", dest="file_format", choices=["dhan", "csv"], default="dhan")
        parser.add_argument("--derivatives", action="store_true", help="Also import FUTIDX/FUTSTK/OPTIDX/OPTSTK.")
        parser.add_argument(
            "--record-data",
            action="store_true",
            help="Stream newly created instruments live (off by default; existing instruments keep theirs).",
        )
        parser.add_argument("--no-progress", action="store_true", help="Do not show a progress bar.")

    def handle(self, *args, **options) -> None:
        show_progress = not options["no_progress"] and sys.stderr.isatty()
        try:
            with open_source(options["source"]) as stream:
                lines = tqdm(stream, desc="Importing", unit=" lines", file=sys.stderr, disable=not show_progress)
                result = instruments_import(
                    lines=lines,
                    file_format=options["file_format"],
                    include_derivatives=options["derivatives"],
                    record_data=options["record_data"],
                )
        except InstrumentImportError as exc:
            raise CommandError(str(exc)) from exc
        except (csv.Error, UnicodeDecodeError, OSError) as exc:
            # The source broke off mid-way: batches already written stay (each one is complete).
            raise CommandError(f"Import stopped, the source could not be read: {exc}") from exc

        for line, reason in result.errors[:MAX_REPORTED_ERRORS]:
            self.stderr.write(f"line {line}: {reason}")
        if len(result.errors) > MAX_REPORTED_ERRORS:
            self.stderr.write(f"... and {len(result.errors) - MAX_REPORTED_ERRORS} more malformed rows")
        style = self.style.WARNING if result.errors else self.style.SUCCESS
        self.stdout.write(style(f"Import finished: {result.summary()}."))
