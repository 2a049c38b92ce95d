"""``manage.py seed_reference``: instrument types, sectors, exchanges, providers and their mappings."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ingestion.seeding import reference_data_seed


class Command(BaseCommand):
    help = "Create or refresh the reference data (idempotent: a second run changes nothing)."

    def handle(self, *args, **options) -> None:
        report = reference_data_seed()
        for line in report.lines():
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Reference data is up to date."))
