"""The project's URLs with the compat surface mounted, as ``SEED_COMPAT=true`` does (``/seed/``)."""

from django.urls import include, path

from marketapp.urls import handler400, handler403, handler404, handler500  # noqa: F401
from marketapp.urls import urlpatterns as project

urlpatterns = [path("seed/", include("seedcompat.urls")), *project]
