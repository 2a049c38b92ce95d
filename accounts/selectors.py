"""Reads for the accounts app."""

from __future__ import annotations

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialApp
from django.core.exceptions import MultipleObjectsReturned
from django.http import HttpRequest

from accounts.models import User


def user_email_taken(*, email: str) -> bool:
    """Whether some user already has this email address, ignoring case."""
    return User.objects.filter(email__iexact=email.strip()).exists()


def user_get(*, user_id: int) -> User | None:
    """The user with this id, or ``None``."""
    return User.objects.filter(pk=user_id).first()


def google_login_configured(*, request: HttpRequest) -> bool:
    """Whether exactly one Google app is configured (settings APPS or a SocialApp row)."""
    try:
        app = get_adapter(request).get_app(request, provider="google")
    except (SocialApp.DoesNotExist, MultipleObjectsReturned):
        return False
    return bool(app.client_id and app.secret)
