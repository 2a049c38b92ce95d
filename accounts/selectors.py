"""Reads for the accounts app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialApp
from django.core.exceptions import MultipleObjectsReturned, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.filters import UserFilter
from accounts.models import User

# Largest value of a PostgreSQL bigint: ids above it cannot exist and would make the query fail.
MAX_ID = 2**63 - 1


def user_email_taken(*, email: str) -> bool:
    """Whether some user already has this email address, ignoring case."""
    return User.objects.filter(email__iexact=email.strip()).exists()


def user_get(*, user_id: int) -> User | None:
    """The user with this id, or ``None``."""
    return User.objects.filter(pk=user_id).first()


def user_get_by_email(*, email: str) -> User | None:
    """The user with this email address (any case), or ``None``."""
    return User.objects.filter(email__iexact=email.strip()).first()


def user_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[User]:
    """Users by email; ``filters`` takes ``UserFilter``'s keys (``status``, ``role``, ``is_active``,
    ``search``), others are ignored. Invalid values raise ``ValidationError`` keyed by filter name."""
    queryset = User.objects.order_by("email", "id")
    if not filters:
        return queryset
    filterset = UserFilter(filters, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError(filterset.form.errors.as_data())
    return filterset.qs


def user_get_for_admin(*, user_id: int) -> User | None:
    """The user with this id for the admin API, or ``None`` (also for ids no row can have)."""
    if not 0 < user_id <= MAX_ID:
        return None
    return User.objects.filter(pk=user_id).first()


def google_login_configured(*, request: HttpRequest) -> bool:
    """Whether exactly one Google app is configured (settings APPS or a SocialApp row)."""
    try:
        app = get_adapter(request).get_app(request, provider="google")
    except (SocialApp.DoesNotExist, MultipleObjectsReturned):
        return False
    return bool(app.client_id and app.secret)
