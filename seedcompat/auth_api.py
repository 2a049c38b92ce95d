"""The seed's sign-in and registration (``auth/login``, ``auth/register``) over our accounts services.

Unlike our ``/auth/login``, a pending or rejected user gets a token here: the seed front end reads
``user.status`` and shows its own "inactive account" page, while every data endpoint still refuses
the token (``accounts.authentication``). The token is a lone access token of our simplejwt kind,
valid ``SEED_COMPAT_ACCESS_LIFETIME_S`` (the front end has no refresh flow).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.urls import re_path
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.throttles import AuthRateThrottle
from seedcompat.common import SeedApiView
from seedcompat.serializers_users import LoginInputSerializer, RegisterInputSerializer, user_in_db

INVALID_CREDENTIALS = "Invalid credentials"
TOKEN_TYPE = "bearer"  # noqa: S105 - the OAuth token type, not a secret


class SeedCredentialsView(SeedApiView):
    """Credentials in the body, no Authorization header read (a stale token must not block a login).

    Throttled per client address like our own login and registration (``X-Forwarded-For`` only from
    ``TRUSTED_PROXIES``); the login also locks an email after ``LOGIN_FAILURE_LIMIT`` failures
    (``accounts.throttles``).
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthRateThrottle]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class SeedLoginView(SeedCredentialsView):
    """``{"username_or_email", "password"}`` -> ``{"access_token", "token_type", "user"}``."""

    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = services.user_credentials_check(
                request=request._request,
                email=serializer.validated_data["username_or_email"],
                password=serializer.validated_data["password"],
            )
        except AuthenticationFailed as exc:
            raise AuthenticationFailed(INVALID_CREDENTIALS) from exc
        token = services.user_access_token_issue(
            user=user, lifetime=timedelta(seconds=settings.SEED_COMPAT_ACCESS_LIFETIME_S)
        )
        return Response({"access_token": token, "token_type": TOKEN_TYPE, "user": user_in_db(user)})


class SeedRegisterView(SeedCredentialsView):
    """``{"username", "email", "password"[, "fname", "lname", "profile_picture_url"]}`` -> ``UserInDb``."""

    def post(self, request: Request) -> Response:
        serializer = RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        picture = data.pop("profile_picture_url")
        # The seed's contract answers the new UserInDb, so a taken address stays a 400 here.
        user = services.user_register(**data, reveal_taken=True)
        user = services.user_profile_picture_set(user=user, url=picture)
        return Response(user_in_db(user), status=status.HTTP_201_CREATED)


urlpatterns = [
    re_path(r"^auth/login/?$", SeedLoginView.as_view(), name="seed-auth-login"),
    re_path(r"^auth/register/?$", SeedRegisterView.as_view(), name="seed-auth-register"),
]
