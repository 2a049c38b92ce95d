"""The seed's user documents (``UserInDb``) and request bodies, mapped onto our ``accounts.User``.

Mapping (our field -> the seed's):

* ``first_name`` / ``last_name`` -> ``fname`` / ``lname`` (``null`` when blank);
* ``username``: we sign in by email and keep no separate user name. The seed front end shows
  ``username`` as the person's display name (its register form calls it "Name"), so it is the
  full name, or the email's local part when no name is stored; registration stores the name
  sent as ``username`` in ``first_name``;
* ``role`` -> ``role_id`` (1 admin, superusers included; 2 viewer);
* ``status`` -> ``status`` (0 pending, 1 approved, 2 rejected);
* ``is_active`` -> ``blacklisted`` (a deactivated user cannot sign in, as the seed's blacklisted
  user); the seed's ``is_active`` means "approved", so it is ``is_active and approved`` here.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from accounts.models import User
from core.api.serializers import StrictFieldsMixin
from seedcompat.common import ROLES_BY_ID, STATUS_IDS, STATUSES_BY_ID, role_id

NAME_MAX = User._meta.get_field("first_name").max_length
PICTURE_MAX = User._meta.get_field("profile_picture_url").max_length


def username(user: User) -> str:
    """The seed's ``username``: our display name (full name, else the email's local part)."""
    full = f"{user.first_name} {user.last_name}".strip()
    return full or user.email.split("@", 1)[0]


def user_in_db(user: User) -> dict[str, Any]:
    """The seed's ``UserInDb`` for one of our users (every key always present)."""
    return {
        "id": user.pk,
        "email": user.email,
        "fname": user.first_name or None,
        "lname": user.last_name or None,
        "username": username(user),
        "profile_picture_url": user.profile_picture_url or None,
        "blacklisted": not user.is_active,
        "role_id": role_id(user),
        "is_active": bool(user.is_active and user.is_approved),
        "status": STATUS_IDS[user.status],
    }


def _password_field() -> serializers.CharField:
    return serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class LoginInputSerializer(StrictFieldsMixin, serializers.Serializer):
    username_or_email = serializers.CharField(max_length=254, help_text="The email address (our user name).")
    password = _password_field()


class RegisterInputSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True, allow_null=True)
    email = serializers.EmailField(max_length=254)
    password = _password_field()
    fname = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True, allow_null=True)
    lname = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True, allow_null=True)
    profile_picture_url = serializers.URLField(
        max_length=PICTURE_MAX, required=False, allow_blank=True, allow_null=True
    )

    def validate(self, attrs: dict) -> dict:
        """Our registration's arguments: ``fname`` wins over ``username`` for the first name."""
        return {
            "email": attrs["email"],
            "password": attrs["password"],
            "first_name": attrs.get("fname") or attrs.get("username") or "",
            "last_name": attrs.get("lname") or "",
            "profile_picture_url": attrs.get("profile_picture_url") or "",
        }


class ChangePasswordInputSerializer(StrictFieldsMixin, serializers.Serializer):
    old_password = _password_field()
    new_password = _password_field()


class ResetPasswordInputSerializer(StrictFieldsMixin, serializers.Serializer):
    new_password = _password_field()


class StatusIdField(serializers.ChoiceField):
    """0, 1 or 2 (also as text, as in a query string), answered as our status value."""

    def __init__(self, **kwargs):
        super().__init__(choices=sorted(STATUSES_BY_ID), **kwargs)

    def to_internal_value(self, data):
        return STATUSES_BY_ID[super().to_internal_value(data)]


class RoleIdField(serializers.ChoiceField):
    """1 (admin) or 2 (viewer), answered as our role value."""

    def __init__(self, **kwargs):
        super().__init__(choices=sorted(ROLES_BY_ID), **kwargs)

    def to_internal_value(self, data):
        return ROLES_BY_ID[super().to_internal_value(data)]


class UserStatusQuerySerializer(serializers.Serializer):
    user_status = StatusIdField()


class UserListQuerySerializer(serializers.Serializer):
    """Other query parameters are ignored (no 400 for a cache buster); ``user_status=`` means all."""

    user_status = StatusIdField(required=False)


class UserRoleQuerySerializer(serializers.Serializer):
    role_id = RoleIdField()


class UserUpdateInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """The seed's ``UserUpdate``: every field optional; ``null`` leaves a field as it is."""

    email = serializers.EmailField(max_length=254, required=False, allow_null=True)
    fname = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True, allow_null=True)
    lname = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True, allow_null=True)
    username = serializers.CharField(max_length=NAME_MAX, required=False, allow_blank=True, allow_null=True)
    profile_picture_url = serializers.URLField(
        max_length=PICTURE_MAX, required=False, allow_blank=True, allow_null=True
    )
    blacklisted = serializers.BooleanField(required=False, allow_null=True)
    role_id = RoleIdField(required=False, allow_null=True)
    status = StatusIdField(required=False, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        return {key: value for key, value in attrs.items() if value is not None}


@contextmanager
def seed_field_names(renames: dict[str, str]):
    """Re-raise a service's ``ValidationError`` with the seed's field names (``role`` -> ``role_id``...)."""
    try:
        yield
    except DjangoValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise
        raise serializers.ValidationError(
            {renames.get(field, field): messages for field, messages in exc.message_dict.items()}
        ) from exc
