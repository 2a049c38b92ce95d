"""The Google sign-in that ends in a JWT hand-off (allauth does the OAuth; see accounts.adapters)."""

from __future__ import annotations

import logging

from allauth.socialaccount.adapter import get_adapter as get_social_adapter
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import user_access_check
from accounts.models import User

logger = logging.getLogger(__name__)

# Session keys of the Google sign-in that ends in a JWT hand-off (see accounts.adapters).
GOOGLE_API_FLOW_SESSION_KEY = "accounts.google_api_flow"
GOOGLE_HANDOFF_SESSION_KEY = "accounts.google_handoff_user_id"
# Marker kept in allauth's OAuth state ("data") so the adapters know the flow wants tokens back.
GOOGLE_HANDOFF_STATE = {"handoff": "jwt"}


def google_login_redirect(*, request: HttpRequest) -> HttpResponse:
    """Start Google sign-in through allauth; after the callback the user lands on the JWT hand-off view."""
    provider = get_social_adapter(request).get_provider(request, "google")
    request.session[GOOGLE_API_FLOW_SESSION_KEY] = True
    return provider.redirect(
        request,
        process="login",
        next_url=reverse("auth-google-complete"),
        data=dict(GOOGLE_HANDOFF_STATE),
    )


def google_login_mark_handoff(*, request: HttpRequest, user: User) -> None:
    """Remember that this session just signed in with Google for a JWT hand-off (called by the adapter)."""
    request.session[GOOGLE_HANDOFF_SESSION_KEY] = user.pk


def google_login_complete(*, request: HttpRequest) -> User:
    """End the Google sign-in: the user allauth just logged in, once; the session is then closed.

    The session only carried the OAuth handshake; API clients continue with the JWT pair.
    Raises ``AuthenticationFailed`` when no Google sign-in is pending in this session.
    """
    user_id = request.session.pop(GOOGLE_HANDOFF_SESSION_KEY, None)
    user = request.user
    if user_id is None or not user.is_authenticated or user.pk != user_id:
        raise AuthenticationFailed("No Google sign-in to complete; start at /auth/google/login.")
    logout(request)
    user_access_check(user)
    return user
