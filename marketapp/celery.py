"""The Celery application: Redis broker, settings under the CELERY_ namespace, tasks per app.

Queues ``streams`` (provider streams, long-running) and ``default`` (short jobs); see the
CELERY_ and STREAM_ settings and the README's "Celery workers" for the worker command lines.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketapp.settings")

app = Celery("marketapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
