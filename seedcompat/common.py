"""What every compat view shares: JSON only, our JWT (Bearer), the seed's codes for roles and statuses.

Errors keep the project's body (``{"detail": "<text>", "status_code": N[, "errors": ...]}``):
the seed front end reads ``detail`` as text, which is exactly what it shows. A missing or
invalid token is a 401 (the front end logs out and goes to its login page); a signed-in user
without the right role gets a 403.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from accounts.models import User
from core.api.permissions import is_admin

# The seed's integer codes (its CommonConstants).
ROLE_ADMIN = 1
ROLE_VIEWER = 2
STATUS_PENDING = 0
STATUS_APPROVED = 1
STATUS_REJECTED = 2

ROLE_IDS = {User.Role.ADMIN: ROLE_ADMIN, User.Role.USER: ROLE_VIEWER}
ROLES_BY_ID = {v: k for k, v in ROLE_IDS.items()}
STATUS_IDS = {"pending": STATUS_PENDING, "approved": STATUS_APPROVED, "rejected": STATUS_REJECTED}
STATUSES_BY_ID = {v: k for k, v in STATUS_IDS.items()}


def role_id(user: User) -> int:
    return ROLE_ADMIN if is_admin(user) else ROLE_VIEWER


def seed_time(value: time | None) -> str | None:
    """``HH:MM:SS`` (the seed's time-of-day format), or None."""
    return value.strftime("%H:%M:%S") if value is not None else None


def seed_datetime(value: datetime | None) -> str | None:
    """ISO 8601 with an explicit offset (``...Z``): a naive string would be read as browser-local time."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class IsAdminRole(BasePermission):
    message = "Insufficient permissions"

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and is_admin(request.user))


class SeedApiView(APIView):
    """Base of every compat view: JSON only, signed-in users (admins where ``admin_only``)."""

    renderer_classes = [JSONRenderer]
    permission_classes = [IsAuthenticated]
    # The seed's own shapes, documented in the README: kept out of our OpenAPI schema.
    schema = None

    def get_permissions(self):
        if getattr(self, "admin_only", False):
            return [IsAuthenticated(), IsAdminRole()]
        return super().get_permissions()
