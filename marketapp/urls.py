"""Top-level URL configuration: the seed design's paths, kept exactly."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="schema"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("marketdata.page_urls")),
    path("", include("accounts.urls")),
    path("", include("exchanges.urls")),
    path("", include("instruments.urls")),
    path("", include("ingestion.urls")),
    path("", include("marketdata.urls")),
    path("", include("marketapp.api.health")),
]

handler400 = "marketapp.api.errors.handler400"
handler403 = "marketapp.api.errors.handler403"
handler404 = "marketapp.api.errors.handler404"
handler500 = "marketapp.api.errors.handler500"
