"""Project-wide middleware: clear answers instead of 500s for features a deployment did not configure."""

from __future__ import annotations

from allauth.socialaccount.models import SocialApp
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class ProviderNotConfiguredMiddleware:
    """A sign-in provider's route (``/accounts/google/...``) without its app configured is a 404.

    allauth raises ``SocialApp.DoesNotExist`` from every provider view when no app (settings or
    admin) is configured for it, which would otherwise be an anonymous 500.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, SocialApp.DoesNotExist):
            return None
        context = {
            "title": "Sign-in method not available",
            "message": "This sign-in method is not configured on this server.",
        }
        return render(request, "unavailable.html", context, status=404)
