"""REST authentication that lets in approved users only (``User.status``).

A pending or rejected user's JWT or session still identifies them, but every request answers
403 with ``account_pending`` / ``account_rejected`` at the start of ``detail``; an inactive
user is refused by simplejwt itself (401). The user row is read on every request, so a status
change or a deactivation takes effect at once (the history views cache it briefly, see
``marketdata.api.auth``).

Every JWT carries ``tv``, the user's ``token_version`` when it was issued (tokens without it
count as version 0). A password change or reset, a deactivation or rejection, and logging out
everywhere raise the version, so every token issued before answers 401 at its next request:
at once here and on ``/ws``, within ``HISTORY_AUTH_CACHE_S`` (default 10 s) on the history
endpoints of another process, which cache the user row that long.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

from accounts.models import User

TOKEN_VERSION_CLAIM = "tv"  # noqa: S105 - a claim name
TOKEN_REVOKED_MESSAGE = "Token was revoked (password changed or signed out everywhere); sign in again."  # noqa: S105 - a message

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


def token_version_current(*, user, token) -> bool:
    """Whether a token (access or refresh) was issued under the user's current ``token_version``."""
    try:
        issued = int(token.get(TOKEN_VERSION_CLAIM, 0))
    except (TypeError, ValueError):
        return False
    return issued == getattr(user, "token_version", 0)


def token_version_check(*, user, token) -> None:
    """Raise ``InvalidToken`` (401) for a token issued before the user's tokens were revoked."""
    if not token_version_current(user=user, token=token):
        raise InvalidToken(TOKEN_REVOKED_MESSAGE)


class ApprovedJWTAuthentication(JWTAuthentication):
    """simplejwt's bearer authentication (active users only) that also refuses non-approved users
    and tokens issued before the user's last revocation (``token_version``)."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            # Again here for subclasses whose get_user answers a cached user.
            token_version_check(user=result[0], token=result[1])
        return result

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        user_access_check(user)
        token_version_check(user=user, token=validated_token)
        return user


class ApprovedSessionAuthentication(SessionAuthentication):
    """Session authentication (the dashboard's cookie) that also refuses non-approved users."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            user_access_check(result[0])
        return result
