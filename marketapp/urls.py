"""Top-level URL configuration: the seed design's paths, kept exactly."""

from csp.decorators import csp_replace
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="schema"),
    # ReDoc's renderer injects <style> elements (so inline styles, and no style hash: a hash would
    # switch 'unsafe-inline' off) and runs its search in a blob: worker. Scripts stay 'self' only.
    path(
        "redoc",
        csp_replace({"style-src": ["'self'", "'unsafe-inline'"], "worker-src": ["'self'", "blob:"]})(
            SpectacularRedocView.as_view(url_name="schema")
        ),
        name="redoc",
    ),
    # The split view serves its start-up script from "/?script" instead of inline (Content-Security-Policy).
    path("", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("marketapp.page_urls")),
    path("", include("accounts.urls")),
    path("", include("exchanges.urls")),
    path("", include("instruments.urls")),
    path("", include("ingestion.urls")),
    path("", include("marketdata.urls")),
    path("", include("marketapp.health")),
    path("", include("marketapp.metrics")),
]

if settings.SEED_COMPAT:
    # The seed service's paths under their own prefix: ours stay exactly as they are.
    urlpatterns.insert(0, path(settings.SEED_COMPAT_PREFIX, include("seedcompat.urls")))

handler400 = "core.api.errors.handler400"
handler403 = "core.api.errors.handler403"
handler404 = "core.api.errors.handler404"
handler500 = "core.api.errors.handler500"
