"""REST authentication that lets in approved users only (``User.status``).

A pending or rejected user's JWT or session still identifies them, but every request answers
403 with ``account_pending`` / ``account_rejected`` at the start of ``detail``; an inactive
user is refused by simplejwt itself (401). The user row is read on every request, so a status
change or a deactivation takes effect at once (the history views cache it briefly, see
``marketdata.api.auth``).
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework_simplejwt.authentication import JWTAuthentication

from accounts.models import User

ACCOUNT_PENDING = "account_pending"
ACCOUNT_REJECTED = "account_rejected"

_MESSAGES = {
    User.Status.PENDING: (
        ACCOUNT_PENDING,
        "account_pending: this account is waiting for an administrator's approval; no data until then.",
    ),
    User.Status.REJECTED: (ACCOUNT_REJECTED, "account_rejected: an administrator rejected this account."),
}


class AccountNotApproved(exceptions.PermissionDenied):
    """403: the user is known but not approved. ``detail`` starts with the code."""

    def __init__(self, status: str) -> None:
        code, message = _MESSAGES.get(status, _MESSAGES[User.Status.PENDING])
        super().__init__(message, code=code)
        self.account_code = code


def user_access_check(user) -> None:
    """Raise ``AccountNotApproved`` unless the user is approved (anything without a status passes)."""
    status = getattr(user, "status", User.Status.APPROVED)
    if status != User.Status.APPROVED:
        raise AccountNotApproved(status)


class ApprovedJWTAuthentication(JWTAuthentication):
    """simplejwt's bearer authentication (active users only) that also refuses non-approved users."""

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        user_access_check(user)
        return user


class ApprovedSessionAuthentication(SessionAuthentication):
    """Session authentication (the dashboard's cookie) that also refuses non-approved users."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            user_access_check(result[0])
        return result
