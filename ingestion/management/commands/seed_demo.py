"""``manage.py seed_demo``: reference data, about twenty demo instruments and an admin user."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ingestion.demo_history import demo_history_seed
from ingestion.seeding import demo_data_seed
from instruments.reference_data import DEFAULT_ADMIN_EMAIL


class Command(BaseCommand):
    help = (
        "Seed the reference data, demo instruments on NSE, BSE and NASDAQ (Yahoo, Dhan and simulator "
        "mappings) and an admin user. The admin password comes from DEMO_ADMIN_PASSWORD, or is "
        "generated and printed once when the user is created."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--admin-email",
            default="",
            help=f"Admin email (default: DEMO_ADMIN_EMAIL from the environment, else {DEFAULT_ADMIN_EMAIL}).",
        )
        parser.add_argument(
            "--history-sessions",
            type=int,
            default=None,
            help="Past sessions of synthetic 1-minute and daily bars per demo instrument "
            "(default DEMO_HISTORY_SESSIONS; 0 writes none).",
        )

    def handle(self, *args, **options) -> None:
        email = (
            options["admin_email"]
            or getattr(settings, "DEMO_ADMIN_EMAIL", "")
            or os.environ.get("DEMO_ADMIN_EMAIL", "")
            or DEFAULT_ADMIN_EMAIL
        )
        try:
            result = demo_data_seed(admin_email=email, admin_password=settings.DEMO_ADMIN_PASSWORD)
        except ValidationError as exc:
            raise CommandError(f"Invalid admin email '{email}': {' '.join(exc.messages)}") from exc
        for line in result.report.lines():
            self.stdout.write(line)
        sessions = options["history_sessions"]
        sessions = settings.DEMO_HISTORY_SESSIONS if sessions is None else sessions
        if sessions < 0:
            raise CommandError("--history-sessions must be 0 or more.")
        history = demo_history_seed(sessions=sessions)
        if sessions:
            self.stdout.write(
                f"demo history: {history.intraday} 1-minute bars and {history.daily} daily bars written "
                f"({sessions} past sessions per exchange; existing bars kept)"
            )
        admin = result.admin
        if not admin.created:
            self.stdout.write(f"Admin user {admin.user.email} already exists; left unchanged.")
        elif admin.generated_password:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin user {admin.user.email} with password: {admin.generated_password}\n"
                    "It is shown only this once; set DEMO_ADMIN_PASSWORD to choose it yourself."
                )
            )
        else:
            self.stdout.write(f"Created admin user {admin.user.email} (password from DEMO_ADMIN_PASSWORD).")
        self.stdout.write(self.style.SUCCESS("Demo data is ready."))
