"""The Celery layout: task names, queues and limits, argument checks, and the beat schedule rows."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from ingestion import tasks
from ingestion.management.commands.setup_periodic_tasks import periodic_tasks_setup
from ingestion.tests.support import redis_db
from marketapp.celery import app

__all__ = ["redis_db"]  # the fixture, from the support module


@pytest.fixture
def broker(redis_db):
    """The broker's Redis database (the test REDIS_URL, as CELERY_BROKER_URL), empty before and after."""
    assert settings.CELERY_BROKER_URL == settings.REDIS_URL
    return redis_db


def test_tasks_are_registered_under_their_names_with_their_limits():
    app.loader.import_default_modules()
    names = {
        "ingestion.run_stream",
        "ingestion.stream_watchdog",
        "ingestion.persist_bars",
        "ingestion.daily_rollup",
        "ingestion.backfill_history",
        "ingestion.repair_gaps",
        "ingestion.populate",
    }
    assert names <= set(app.tasks)
    stream = app.tasks["ingestion.run_stream"]
    assert stream.time_limit is None and stream.soft_time_limit is None  # streams run until stopped
    assert stream.acks_late is False
    assert app.conf.task_time_limit is None  # a global limit would cut the streams too
    for name in names - {"ingestion.run_stream"}:
        assert app.tasks[name].time_limit, name  # every short job has a hard limit
        assert app.tasks[name].acks_late is True, name
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.worker_disable_prefetch is True


def test_streams_go_to_the_streams_queue_and_jobs_to_default(broker):
    tasks.run_stream.delay("SIM")
    tasks.persist_bars.delay()
    stream_message = json.loads(broker.lpop("streams"))
    job_message = json.loads(broker.lpop("default"))
    assert stream_message["headers"]["task"] == "ingestion.run_stream"
    assert job_message["headers"]["task"] == "ingestion.persist_bars"


@pytest.mark.parametrize("batch_size", [0, -5, "many", 1.5, True, 100_001, None])
def test_persist_bars_refuses_bad_batch_sizes(batch_size):
    with pytest.raises(tasks.TaskArgumentError, match=r"batch_size must be a whole number from 1 to 100000"):
        tasks.persist_bars(batch_size=batch_size)


def _rows() -> dict:
    return {
        "tasks": sorted(
            PeriodicTask.objects.values_list(
                "id", "name", "task", "interval_id", "crontab_id", "queue", "expire_seconds", "enabled"
            )
        ),
        "intervals": sorted(IntervalSchedule.objects.values_list("id", "every", "period")),
        "crontabs": sorted(CrontabSchedule.objects.values_list("id", "minute", "hour")),
    }


@pytest.mark.django_db
def test_setup_periodic_tasks_twice_gives_the_same_rows():
    out = io.StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    first = _rows()
    call_command("setup_periodic_tasks", stdout=out)
    assert _rows() == first
    assert "ingestion: stream watchdog: ingestion.stream_watchdog" in out.getvalue()

    by_name = {t.name: t for t in PeriodicTask.objects.select_related("interval", "crontab")}
    assert set(by_name) == {
        "ingestion: stream watchdog",
        "ingestion: persist bars",
        "ingestion: daily rollup",
        "ingestion: renew Dhan tokens",
        "ingestion: repair gaps",
    }
    renew = by_name["ingestion: renew Dhan tokens"]
    assert (renew.task, renew.interval.every) == ("ingestion.renew_dhan_tokens", 300)
    watchdog = by_name["ingestion: stream watchdog"]
    assert (watchdog.task, watchdog.interval.every, watchdog.interval.period) == (
        "ingestion.stream_watchdog",
        15,
        "seconds",
    )
    assert watchdog.expire_seconds == 15 and watchdog.queue == "default" and watchdog.enabled
    persist = by_name["ingestion: persist bars"]
    assert (persist.task, persist.interval.every) == ("ingestion.persist_bars", 5)
    assert by_name["ingestion: daily rollup"].interval.every == 300
    repair = by_name["ingestion: repair gaps"]
    assert (repair.task, repair.interval, repair.crontab.hour, repair.crontab.minute) == (
        "ingestion.repair_gaps",
        None,
        "2",
        "30",
    )
    assert str(repair.crontab.timezone) == "UTC"


@pytest.mark.django_db
def test_setup_periodic_tasks_follows_the_settings_and_keeps_an_operators_pause(settings):
    periodic_tasks_setup()
    PeriodicTask.objects.filter(name="ingestion: daily rollup").update(enabled=False)
    PeriodicTask.objects.filter(name="ingestion: stream watchdog").update(task="something.else")
    settings.PERSIST_INTERVAL_S = 2.5
    rows = periodic_tasks_setup()
    assert [created for _task, created in rows] == [False] * 5
    assert PeriodicTask.objects.get(name="ingestion: persist bars").interval.every == 3  # whole seconds, rounded up
    assert PeriodicTask.objects.get(name="ingestion: stream watchdog").task == "ingestion.stream_watchdog"
    assert PeriodicTask.objects.get(name="ingestion: daily rollup").enabled is False
    assert PeriodicTask.objects.count() == 5


@pytest.mark.django_db
def test_populate_refuses_a_bad_or_unknown_job_id():
    with pytest.raises(tasks.TaskArgumentError, match=r"^job_id must be a whole number from 1 to"):
        tasks.populate(job_id="7")
    with pytest.raises(tasks.TaskArgumentError, match=r"^No populate job 999999$"):
        tasks.populate(job_id=999_999)
