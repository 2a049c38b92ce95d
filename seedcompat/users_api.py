"""The seed's ``user/...`` routes over our accounts services: own password change, user administration.

Everything but ``user/change-password`` is for admins (403 ``Insufficient permissions`` otherwise).
Our users API's self-protection applies: an admin cannot reject, un-approve, demote or blacklist
themselves (400 naming the seed's field). Every success answers JSON, password operations a
``{"message": ...}``.
"""

from __future__ import annotations

from django.db import transaction
from django.urls import re_path
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.models import User
from accounts.selectors import user_get_by_email, user_get_for_admin, user_list
from accounts.throttles import AuthRateThrottle
from seedcompat.common import SeedApiView
from seedcompat.serializers_users import (
    ChangePasswordInputSerializer,
    ResetPasswordInputSerializer,
    UserListQuerySerializer,
    UserRoleQuerySerializer,
    UserStatusQuerySerializer,
    UserUpdateInputSerializer,
    seed_field_names,
    user_in_db,
    username,
)

USER_NOT_FOUND = "User not found"
EMAIL_FIXED = "The email address is the user's sign-in name and cannot be changed here."
# Our service's field names -> the seed's (UserUpdate body).
UPDATE_FIELDS = {"status": "status", "role": "role_id", "is_active": "blacklisted"}


def _user_or_404(user_id: str) -> User:
    user = user_get_for_admin(user_id=int(user_id))
    if user is None:
        raise NotFound(USER_NOT_FOUND)
    return user


class SeedChangePasswordView(SeedApiView):
    """The signed-in user's own password; every refresh token of theirs is blacklisted."""

    throttle_classes = [AuthRateThrottle]

    def post(self, request: Request) -> Response:
        serializer = ChangePasswordInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_password_change(user=request.user, **serializer.validated_data)
        return Response({"message": "Password changed successfully"})


class SeedUserListView(SeedApiView):
    """``?user_status=0|1|2`` (optional): a bare array of ``UserInDb``, by email."""

    admin_only = True

    def get(self, request: Request) -> Response:
        query = UserListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        status = query.validated_data.get("user_status")
        users = user_list(filters={"status": status} if status is not None else None)
        return Response([user_in_db(user) for user in users])


class SeedUserDetailView(SeedApiView):
    """Read a user, or change any of the seed's ``UserUpdate`` fields."""

    admin_only = True

    def get(self, request: Request, user_id: str) -> Response:
        return Response(user_in_db(_user_or_404(user_id)))

    def put(self, request: Request, user_id: str) -> Response:
        user = _user_or_404(user_id)
        serializer = UserUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "email" in data and data["email"].strip().lower() != user.email:
            raise ValidationError({"email": [EMAIL_FIXED]})
        first_name, last_name = data.get("fname"), data.get("lname")
        # ``username`` is our display name: without fname/lname it becomes the first name alone.
        if first_name is None and last_name is None and data.get("username", username(user)) != username(user):
            first_name, last_name = data["username"], ""
        blacklisted = data.get("blacklisted")
        with transaction.atomic(), seed_field_names(UPDATE_FIELDS):
            user = services.user_admin_update(
                actor=request.user,
                user=user,
                status=data.get("status"),
                role=data.get("role_id"),
                is_active=None if blacklisted is None else not blacklisted,
            )
            user = services.user_update(user=user, first_name=first_name, last_name=last_name)
            user = services.user_profile_picture_set(user=user, url=data.get("profile_picture_url", ""))
        return Response(user_in_db(user))


class SeedUserByEmailView(SeedApiView):
    admin_only = True

    def get(self, request: Request, email: str) -> Response:
        user = user_get_by_email(email=email)
        if user is None:
            raise NotFound(USER_NOT_FOUND)
        return Response(user_in_db(user))


class SeedUserStatusView(SeedApiView):
    """``?user_status=0|1|2``, no body: approve (1) or reject (2) a user."""

    admin_only = True

    def patch(self, request: Request, user_id: str) -> Response:
        user = _user_or_404(user_id)
        query = UserStatusQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        with seed_field_names({"status": "user_status"}):
            user = services.user_admin_update(actor=request.user, user=user, status=query.validated_data["user_status"])
        return Response(user_in_db(user))


class SeedUserRoleView(SeedApiView):
    """``?role_id=1|2``, no body: make a user an admin (1) or a viewer (2)."""

    admin_only = True

    def patch(self, request: Request, user_id: str) -> Response:
        user = _user_or_404(user_id)
        query = UserRoleQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        with seed_field_names({"role": "role_id"}):
            user = services.user_admin_update(actor=request.user, user=user, role=query.validated_data["role_id"])
        return Response(user_in_db(user))


class SeedUserResetPasswordView(SeedApiView):
    """``{"new_password"}``: an admin sets a user's password (validated; refresh tokens blacklisted)."""

    admin_only = True

    def post(self, request: Request, user_id: str) -> Response:
        user = _user_or_404(user_id)
        serializer = ResetPasswordInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_password_set(user=user, new_password=serializer.validated_data["new_password"])
        return Response({"message": "Password reset successfully"})


USER_ID = r"(?P<user_id>[0-9]{1,19})"

urlpatterns = [
    re_path(r"^user/?$", SeedUserListView.as_view(), name="seed-user-list"),
    re_path(r"^user/change-password/?$", SeedChangePasswordView.as_view(), name="seed-user-change-password"),
    re_path(r"^user/email/(?P<email>[^/]{1,254})/?$", SeedUserByEmailView.as_view(), name="seed-user-by-email"),
    re_path(rf"^user/update_status/{USER_ID}/?$", SeedUserStatusView.as_view(), name="seed-user-update-status"),
    re_path(rf"^user/update_role/{USER_ID}/?$", SeedUserRoleView.as_view(), name="seed-user-update-role"),
    re_path(
        rf"^user/{USER_ID}/reset-password/?$", SeedUserResetPasswordView.as_view(), name="seed-user-reset-password"
    ),
    re_path(rf"^user/{USER_ID}/?$", SeedUserDetailView.as_view(), name="seed-user-detail"),
]
