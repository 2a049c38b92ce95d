"""WSGI entry point (management tooling only; the web process is ASGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketapp.settings")
application = get_wsgi_application()
