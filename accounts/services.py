"""Writes for the accounts app: registration, profile changes, JWT issue/refresh/revoke, Google hand-off."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from allauth.socialaccount.adapter import get_adapter as get_social_adapter
from django.conf import settings
from django.contrib.auth import authenticate, logout
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.selectors import user_email_taken, user_get

EMAIL_TAKEN_MESSAGE = "A user with this email address already exists."
REGISTRATION_CLOSED_MESSAGE = "Registration is closed on this server; ask an administrator for an account."

# Session keys of the Google sign-in that ends in a JWT hand-off (see accounts.adapters).
GOOGLE_API_FLOW_SESSION_KEY = "accounts.google_api_flow"
GOOGLE_HANDOFF_SESSION_KEY = "accounts.google_handoff_user_id"
# Marker kept in allauth's OAuth state ("data") so the adapters know the flow wants tokens back.
GOOGLE_HANDOFF_STATE = {"handoff": "jwt"}


def user_register(*, email: str, password: str, first_name: str = "", last_name: str = "") -> User:
    """Create a user with the ``user`` role after checking the email is free and the password is strong.

    Raises ``PermissionDenied`` when ``settings.REGISTRATION_OPEN`` is false and
    ``ValidationError`` (``email`` / ``password``) for a taken email or a weak password.
    """
    if not settings.REGISTRATION_OPEN:
        raise PermissionDenied(REGISTRATION_CLOSED_MESSAGE)
    email = User.objects.normalize_email(email.strip()).lower()
    if user_email_taken(email=email):
        raise ValidationError({"email": [EMAIL_TAKEN_MESSAGE]})
    # Validators such as UserAttributeSimilarityValidator compare against the user's own fields.
    candidate = User(email=email, first_name=first_name, last_name=last_name)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    try:
        with transaction.atomic():
            return User.objects.create_user(email=email, password=password, first_name=first_name, last_name=last_name)
    except IntegrityError as exc:
        # Lost a race with a concurrent registration of the same address.
        raise ValidationError({"email": [EMAIL_TAKEN_MESSAGE]}) from exc


def user_authenticate(*, request: HttpRequest | None, email: str, password: str) -> User:
    """The active user with these credentials; ``AuthenticationFailed`` otherwise."""
    user = authenticate(request, email=email.strip(), password=password)
    if user is None:
        raise AuthenticationFailed("Invalid email or password.")
    return user


def user_update(*, user: User, first_name: str | None = None, last_name: str | None = None) -> User:
    """Change the user's own name fields; ``None`` leaves a field as it is."""
    changed: list[str] = []
    if first_name is not None and first_name != user.first_name:
        user.first_name = first_name
        changed.append("first_name")
    if last_name is not None and last_name != user.last_name:
        user.last_name = last_name
        changed.append("last_name")
    if changed:
        user.save(update_fields=[*changed, "updated_at"])
    return user


def user_profile_picture_set(*, user: User, url: str) -> User:
    """Store the picture URL a sign-in provider reported (ignored when empty or unchanged)."""
    if url and url != user.profile_picture_url:
        user.profile_picture_url = url[: User._meta.get_field("profile_picture_url").max_length]
        user.save(update_fields=["profile_picture_url", "updated_at"])
    return user


def user_tokens_issue(*, user: User) -> dict[str, str]:
    """A fresh JWT pair (``access``, ``refresh``) for the user; the refresh token is tracked for revocation."""
    refresh = RefreshToken.for_user(user)
    update_last_login(None, user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def _refresh_token_parse(raw: str) -> RefreshToken:
    try:
        # Verifies signature, expiry, type and the blacklist.
        return RefreshToken(raw)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc


@transaction.atomic
def user_tokens_refresh(*, refresh: str) -> dict[str, str]:
    """Trade a refresh token for a new pair; the old refresh token is blacklisted (usable once).

    Raises ``InvalidToken`` (401) for an invalid, expired, blacklisted or already used token and
    ``AuthenticationFailed`` when its user no longer exists or is inactive.
    """
    token = _refresh_token_parse(refresh)
    user = user_get(user_id=token.payload.get(jwt_settings.USER_ID_CLAIM))
    if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
        raise AuthenticationFailed("No active account found for the given token.")
    # BlacklistedToken.token is one-to-one: of two concurrent refreshes with the same token only
    # one creates the row, so the other is refused instead of also getting a new pair.
    _, created = token.blacklist()
    if not created:
        raise InvalidToken("Token is blacklisted")
    return user_tokens_issue(user=user)


def user_tokens_revoke(*, refresh: str) -> None:
    """Blacklist a refresh token (logout); it can no longer be refreshed."""
    token = _refresh_token_parse(refresh)
    token.blacklist()


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
    return user


@dataclass
class DemoAdmin:
    """The demo admin account; ``generated_password`` is set only when this run made one up."""

    user: User
    created: bool
    generated_password: str | None = None


@transaction.atomic
def demo_admin_ensure(*, email: str, password: str = "") -> DemoAdmin:
    """Create the admin user (role admin, staff, superuser) unless an account with that email exists.

    An existing account is left exactly as it is. Without a ``password`` a random one is
    generated and returned once, so the caller can show it.
    """
    validate_email(email)
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return DemoAdmin(user=user, created=False)
    generated = None if password else secrets.token_urlsafe(16)
    user = User.objects.create_superuser(email=email, password=password or generated)
    return DemoAdmin(user=user, created=True, generated_password=generated)
