"""The Celery application: Redis broker, settings under the CELERY_ namespace, tasks per app.

Queues ``streams`` (provider streams, long-running) and ``default`` (short jobs); see the
CELERY_ and STREAM_ settings and the README's "Celery workers" for the worker command lines.
"""

import os

from celery import Celery
from celery.signals import after_setup_logger, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketapp.settings")

app = Celery("marketapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
def _json_logs(**kwargs) -> None:
    """LOG_FORMAT=json: Celery has just put its own format on the root logger; put the project's back."""
    from django.conf import settings
    from django.utils.log import configure_logging

    if settings.LOG_FORMAT == "json":
        configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


@worker_process_init.connect
def _publish_metrics(**kwargs) -> None:
    """Each pool process publishes its figures (streams, saver) for /metrics to export."""
    from ingestion.metrics import start_snapshot_publisher

    start_snapshot_publisher("worker")
