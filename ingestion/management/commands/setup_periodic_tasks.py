"""``manage.py setup_periodic_tasks``: the beat schedule as django-celery-beat rows (idempotent).

Celery beat runs with the DatabaseScheduler, so these rows are the schedule and operators can
edit them in the admin. Running the command again puts task, schedule, queue and expiry back
to the configured values but keeps ``enabled`` as an operator left it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


@dataclass(frozen=True)
class Entry:
    """One periodic task: an interval in seconds, or a daily UTC time (hour, minute)."""

    name: str
    task: str
    description: str
    every_s: int | None = None
    daily_at: tuple[int, int] | None = None

    @property
    def expire_seconds(self) -> int:
        # A run that waited longer than its own period is dropped: the next one does the work.
        return self.every_s if self.every_s else 3600


def schedule() -> list[Entry]:
    """The periodic tasks, from the settings."""
    return [
        Entry(
            "ingestion: stream watchdog",
            "ingestion.stream_watchdog",
            "Starts the stream of every active provider whose lease lapsed.",
            every_s=max(1, settings.STREAM_WATCHDOG_INTERVAL_S),
        ),
        Entry(
            "ingestion: persist bars",
            "ingestion.persist_bars",
            "Saves closed bars from the persist stream into PostgreSQL.",
            every_s=max(1, math.ceil(settings.PERSIST_INTERVAL_S)),
        ),
        Entry(
            "ingestion: daily rollup",
            "ingestion.daily_rollup",
            "Rolls each closed session's intraday bars into daily bars (decides itself what is due).",
            every_s=300,
        ),
        Entry(
            "ingestion: renew Dhan tokens",
            "ingestion.renew_dhan_tokens",
            "Renews Dhan access tokens before they expire (DHAN_TOKEN_RENEW_BEFORE_S).",
            every_s=max(1, math.ceil(settings.DHAN_TOKEN_CHECK_S)),
        ),
        Entry(
            "ingestion: repair gaps",
            "ingestion.repair_gaps",
            "Backfills minutes missing inside past sessions.",
            daily_at=(2, 30),
        ),
    ]


def _interval(every_s: int) -> IntervalSchedule:
    found = IntervalSchedule.objects.filter(every=every_s, period=IntervalSchedule.SECONDS).order_by("pk").first()
    return found or IntervalSchedule.objects.create(every=every_s, period=IntervalSchedule.SECONDS)


def _daily(hour: int, minute: int) -> CrontabSchedule:
    spec = {
        "minute": str(minute),
        "hour": str(hour),
        "day_of_week": "*",
        "day_of_month": "*",
        "month_of_year": "*",
        "timezone": "UTC",
    }
    return CrontabSchedule.objects.filter(**spec).order_by("pk").first() or CrontabSchedule.objects.create(**spec)


@transaction.atomic
def periodic_tasks_setup() -> list[tuple[PeriodicTask, bool]]:
    """Create or update the periodic task rows; returns each row and whether it was created."""
    rows = []
    for entry in schedule():
        values = {
            "task": entry.task,
            "interval": _interval(entry.every_s) if entry.every_s else None,
            "crontab": _daily(*entry.daily_at) if entry.daily_at else None,
            "solar": None,
            "clocked": None,
            "args": "[]",
            "kwargs": "{}",
            "queue": "default",
            "expire_seconds": entry.expire_seconds,
            "one_off": False,
            "description": entry.description,
        }
        task = PeriodicTask.objects.filter(name=entry.name).first()
        if task is None:
            rows.append((PeriodicTask.objects.create(name=entry.name, enabled=True, **values), True))
            continue
        if any(getattr(task, field) != value for field, value in values.items()):
            for field, value in values.items():
                setattr(task, field, value)
            task.save()
        rows.append((task, False))
    return rows


class Command(BaseCommand):
    help = "Create or update the Celery beat schedule (django-celery-beat rows); safe to run again."

    def handle(self, *args, **options) -> None:
        for task, created in periodic_tasks_setup():
            schedule_text = task.interval or task.crontab
            state = "created" if created else "up to date"
            self.stdout.write(f"{task.name}: {task.task} {schedule_text} ({state}, {'on' if task.enabled else 'off'})")
