"""The framework floor of the ``history`` benchmark: what a request costs before any work.

``bench.floor_settings`` serves these routes with the project's settings (middleware,
authentication) and the pooled database: ``/floor/django`` (a plain sync Django view) and
``/floor/drf`` (a DRF view with the history endpoints' JWT authentication and permission),
both answering ``{}``. The raw ASGI baseline answers ``/floor`` the same way.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import path
from rest_framework.views import APIView

from marketdata.api.auth import CachedUserJWTAuthentication


def django_floor(request) -> HttpResponse:
    return HttpResponse(b"{}", content_type="application/json")


class DrfFloor(APIView):
    """Authentication, permission and DRF dispatch, no work."""

    authentication_classes = [CachedUserJWTAuthentication]

    def get(self, request) -> HttpResponse:
        return HttpResponse(b"{}", content_type="application/json")


urlpatterns = [
    path("floor/django", django_floor),
    path("floor/drf", DrfFloor.as_view()),
]
