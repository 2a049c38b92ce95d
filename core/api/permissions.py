"""Role-based permissions: reads need a user, writes need the admin role (or a superuser)."""

from rest_framework.permissions import SAFE_METHODS, BasePermission


def is_admin(user) -> bool:
    """Admin role or superuser."""
    return bool(user and user.is_authenticated and getattr(user, "is_admin", False))


class IsAdminRoleOrReadOnly(BasePermission):
    """Authenticated users read; admins write. Anonymous gets 401, wrong role 403."""

    message = "This action needs the admin role."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or is_admin(request.user)


class IsAdminRole(BasePermission):
    """Admins only, for reads too."""

    message = "This resource needs the admin role."

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)
