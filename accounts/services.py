"""Writes for the accounts app: registration, profile changes, JWT issue/refresh/revoke, Google hand-off."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch, get_md5_hash_password

from accounts.authentication import TOKEN_VERSION_CLAIM, token_version_check, user_access_check
from accounts.models import User
from accounts.selectors import user_email_taken, user_get
from accounts.throttles import login_failure_record, login_failures_clear, login_lock_check

logger = logging.getLogger(__name__)

EMAIL_TAKEN_MESSAGE = "A user with this email address already exists."
REGISTRATION_CLOSED_MESSAGE = "Registration is closed on this server; ask an administrator for an account."
WRONG_OLD_PASSWORD_MESSAGE = "The current password is not correct."  # noqa: S105 - a message
RESET_LINK_INVALID_MESSAGE = "The reset link is invalid or has expired; ask for a new one."
REFRESH_CHAIN_EXPIRED_MESSAGE = "This sign-in is older than the refresh limit; sign in again."
AUTH_TIME_CLAIM = "auth_time"


def user_register(
    *, email: str, password: str, first_name: str = "", last_name: str = "", reveal_taken: bool = False
) -> User | None:
    """Create a user with the ``user`` role after checking the password is strong and the email free.

    Raises ``PermissionDenied`` when ``settings.REGISTRATION_OPEN`` is false and
    ``ValidationError`` on ``password`` for a weak password (checked first, so a weak password
    answers alike for taken and free addresses). A taken email answers ``None`` after the same
    password hashing work a new account costs, so callers can answer as for a free one; with
    ``reveal_taken`` (clients whose contract says so) it raises ``ValidationError`` on ``email``.
    """
    if not settings.REGISTRATION_OPEN:
        raise PermissionDenied(REGISTRATION_CLOSED_MESSAGE)
    email = User.objects.normalize_email(email.strip()).lower()
    # Validators such as UserAttributeSimilarityValidator compare against the user's own fields.
    candidate = User(email=email, first_name=first_name, last_name=last_name)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    if user_email_taken(email=email):
        if reveal_taken:
            raise ValidationError({"email": [EMAIL_TAKEN_MESSAGE]})
        make_password(password)  # the time a real registration takes
        logger.info("registration for an existing address answered like a new one")
        return None
    try:
        with transaction.atomic():
            return User.objects.create_user(
                email=email, password=password, first_name=first_name, last_name=last_name, status=user_initial_status()
            )
    except IntegrityError as exc:
        # Lost a race with a concurrent registration of the same address.
        if reveal_taken:
            raise ValidationError({"email": [EMAIL_TAKEN_MESSAGE]}) from exc
        return None


def user_initial_status() -> str:
    """The status of a newly registered user: pending when ``REGISTRATION_REQUIRES_APPROVAL`` is on."""
    return User.Status.PENDING if settings.REGISTRATION_REQUIRES_APPROVAL else User.Status.APPROVED


def user_authenticate(*, request: HttpRequest | None, email: str, password: str) -> User:
    """The active, approved user with these credentials.

    Raises ``AuthenticationFailed`` (401) for wrong credentials or an inactive user, and
    ``AccountNotApproved`` (403, ``account_pending`` / ``account_rejected``) when the
    credentials are right but an administrator has not approved the account.
    """
    user = _credentials_user(request=request, email=email, password=password)
    user_access_check(user)
    return user


def _credentials_user(*, request: HttpRequest | None, email: str, password: str) -> User:
    """The active user with these credentials; counts failures per email (``accounts.throttles``).

    Raises ``Throttled`` (429) while the email is locked, even for the right password, and
    ``AuthenticationFailed`` for wrong credentials or an inactive user.
    """
    login_lock_check(email=email)
    user = authenticate(request, email=email.strip(), password=password)
    if user is None:
        login_failure_record(email=email)
        raise AuthenticationFailed("Invalid email or password.")
    login_failures_clear(email=email)
    return user


def user_credentials_check(*, request: HttpRequest | None, email: str, password: str) -> User:
    """The active user with these credentials, approved or not (``AuthenticationFailed`` otherwise).

    For clients that show a pending or rejected user a page of their own (the seed front end);
    every data endpoint still refuses such a user (``accounts.authentication``).
    """
    return _credentials_user(request=request, email=email, password=password)


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


def refresh_max_age_s() -> int:
    """How long a sign-in may be kept alive by refreshing: ``JWT_REFRESH_MAX_AGE_S`` (default the refresh lifetime)."""
    default = int(jwt_settings.REFRESH_TOKEN_LIFETIME.total_seconds())
    return int(getattr(settings, "JWT_REFRESH_MAX_AGE_S", None) or default)


def user_tokens_issue(*, user: User, auth_time: int | None = None) -> dict[str, str]:
    """A fresh JWT pair (``access``, ``refresh``) for the user; the refresh token is tracked for revocation.

    Both carry the user's ``token_version`` (``tv``) and ``auth_time``, the instant of the sign-in
    the chain of refreshes started with (now, unless a refresh passes the original one on); the
    refresh token never expires after ``auth_time + JWT_REFRESH_MAX_AGE_S``.
    """
    # As simplejwt's for_user, with our claims in place before the token is recorded as outstanding.
    refresh = RefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = str(getattr(user, jwt_settings.USER_ID_FIELD))
    if jwt_settings.CHECK_REVOKE_TOKEN:
        refresh[jwt_settings.REVOKE_TOKEN_CLAIM] = get_md5_hash_password(user.password)
    refresh[TOKEN_VERSION_CLAIM] = user.token_version
    refresh[AUTH_TIME_CLAIM] = int(auth_time if auth_time is not None else refresh["iat"])
    refresh["exp"] = min(refresh["exp"], refresh[AUTH_TIME_CLAIM] + refresh_max_age_s())
    OutstandingToken.objects.create(
        user=user,
        jti=refresh[jwt_settings.JTI_CLAIM],
        token=str(refresh),
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    if auth_time is None:
        update_last_login(None, user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def user_access_token_issue(*, user: User, lifetime: timedelta) -> str:
    """A lone access token valid for ``lifetime``, without a refresh token (clients with no refresh flow).

    It is refused like any access token once the user is deactivated or not approved, or once a
    password change or reset or a logout everywhere raised the user's ``token_version``.
    """
    token = AccessToken.for_user(user)
    token[TOKEN_VERSION_CLAIM] = user.token_version
    token.set_exp(lifetime=lifetime)
    update_last_login(None, user)
    return str(token)


def _refresh_token_parse(raw: str) -> RefreshToken:
    try:
        # Verifies signature, expiry, type and the blacklist.
        return RefreshToken(raw)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc


@transaction.atomic
def user_tokens_refresh(*, refresh: str) -> dict[str, str]:
    """Trade a refresh token for a new pair; the old refresh token is blacklisted (usable once).

    Raises ``InvalidToken`` (401) for an invalid, expired, blacklisted or already used token, one
    issued before the user's tokens were revoked (``token_version``) or one whose chain started
    more than ``JWT_REFRESH_MAX_AGE_S`` ago (``auth_time``, else its ``iat``), and
    ``AuthenticationFailed`` when its user no longer exists or is inactive.
    """
    token = _refresh_token_parse(refresh)
    user = user_get(user_id=token.payload.get(jwt_settings.USER_ID_CLAIM))
    if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
        raise AuthenticationFailed("No active account found for the given token.")
    user_access_check(user)
    token_version_check(user=user, token=token)
    try:
        auth_time = int(token.payload.get(AUTH_TIME_CLAIM, token.payload.get("iat")))
    except (TypeError, ValueError) as exc:
        raise InvalidToken(REFRESH_CHAIN_EXPIRED_MESSAGE) from exc
    if timezone.now().timestamp() - auth_time > refresh_max_age_s():
        raise InvalidToken(REFRESH_CHAIN_EXPIRED_MESSAGE)
    # BlacklistedToken.token is one-to-one: of two concurrent refreshes with the same token only
    # one creates the row, so the other is refused instead of also getting a new pair.
    _, created = token.blacklist()
    if not created:
        raise InvalidToken("Token is blacklisted")
    return user_tokens_issue(user=user, auth_time=auth_time)


def user_tokens_revoke(*, refresh: str) -> None:
    """Blacklist a refresh token (logout); it can no longer be refreshed."""
    token = _refresh_token_parse(refresh)
    token.blacklist()


def user_refresh_tokens_blacklist(*, user: User) -> int:
    """Blacklist every unexpired refresh token issued to the user; the number blacklisted now.

    Access tokens already issued stay valid until they expire (``JWT_ACCESS_LIFETIME_S``).
    """
    outstanding = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now(), blacklistedtoken=None)
    rows = [BlacklistedToken(token=token) for token in outstanding]
    # Concurrent logouts or refreshes may blacklist some of them meanwhile: one row per token.
    BlacklistedToken.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


@transaction.atomic
def user_tokens_revoke_all(*, user: User) -> None:
    """Log the user out everywhere: every JWT issued before stops working (access and refresh).

    Raises ``token_version`` (checked on every authentication and refresh) and blacklists every
    outstanding refresh token. Saved with ``save`` so per-process user caches drop the user.
    """
    user.refresh_from_db(fields=["token_version"])
    user.token_version += 1
    user.save(update_fields=["token_version", "updated_at"])
    user_refresh_tokens_blacklist(user=user)


def _password_set(*, user: User, password: str) -> None:
    user.set_password(password)
    # User.save raises token_version along with the password.
    user.save(update_fields=["password", "updated_at"])
    user_refresh_tokens_blacklist(user=user)


@transaction.atomic
def user_password_change(*, user: User, old_password: str, new_password: str) -> dict[str, str]:
    """Change the user's own password and answer a fresh JWT pair.

    Every refresh token issued before is blacklisted (other sessions end at their access token's
    expiry). Raises ``ValidationError`` for a wrong ``old_password`` or a ``new_password``
    Django's password validators refuse.
    """
    if not user.check_password(old_password):
        raise ValidationError({"old_password": [WRONG_OLD_PASSWORD_MESSAGE]})
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from exc
    _password_set(user=user, password=new_password)
    return user_tokens_issue(user=user)


@transaction.atomic
def user_password_set(*, user: User, new_password: str) -> User:
    """An administrator sets the user's password; Django's validators apply (``ValidationError`` on
    ``new_password``) and every refresh token of the user is blacklisted."""
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from exc
    _password_set(user=user, password=new_password)
    return user


def _self_change_check(*, actor: User, user: User, status: str | None, role: str | None, is_active: bool | None):
    if actor.pk != user.pk:
        return
    problems: dict[str, list[str]] = {}
    if status is not None and status != User.Status.APPROVED:
        problems["status"] = ["You cannot reject your own account or set it back to pending."]
    if role is not None and role != User.Role.ADMIN:
        problems["role"] = ["You cannot remove the admin role from your own account."]
    if is_active is False:
        problems["is_active"] = ["You cannot deactivate your own account."]
    if problems:
        raise ValidationError(problems)


def user_admin_update(
    *, actor: User, user: User, status: str | None = None, role: str | None = None, is_active: bool | None = None
) -> User:
    """An administrator approves, rejects, (de)activates or changes the role of a user.

    ``None`` leaves a field as it is. An administrator cannot demote, deactivate, reject or
    un-approve themselves (``ValidationError``), so there is always someone left to undo it.
    A rejected or deactivated user's tokens stop working at the next request (see
    ``accounts.authentication``); their refresh tokens are blacklisted too.
    """
    _self_change_check(actor=actor, user=user, status=status, role=role, is_active=is_active)
    changed: list[str] = []
    for field, value in (("status", status), ("role", role), ("is_active", is_active)):
        if value is not None and getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    if changed:
        with transaction.atomic():
            user.save(update_fields=[*changed, "updated_at"])
            if not user.is_active or user.status == User.Status.REJECTED:
                # Reactivating or approving later does not bring old tokens back.
                user_tokens_revoke_all(user=user)
    return user


def users_status_set(*, actor: User, users, status: str) -> tuple[int, int]:
    """Approve or reject several users (the admin actions): ``(changed, refused)``.

    Each user is saved on its own (so per-process caches drop it); the actor's own account is
    refused a rejection, as in ``user_admin_update``.
    """
    changed = refused = 0
    for user in users:
        if user.status == status:
            continue
        try:
            user_admin_update(actor=actor, user=user, status=status)
        except ValidationError:
            refused += 1
        else:
            changed += 1
    return changed, refused


@transaction.atomic
def user_password_reset_temporary(*, user: User) -> str:
    """Give the user a random temporary password and return it (shown once, never stored in clear).

    Every refresh token of the user is blacklisted.
    """
    password = secrets.token_urlsafe(12)
    _password_set(user=user, password=password)
    return password


class EmailNotSent(Exception):
    """The email backend refused or could not reach the mail server."""


def password_reset_url(*, request: HttpRequest | None, uid: str, token: str) -> str:
    """The reset link: ``PASSWORD_RESET_URL`` with ``{uid}`` and ``{token}``, else this server's page."""
    template = settings.PASSWORD_RESET_URL
    if template:
        return template.format(uid=uid, token=token)
    path = reverse("auth-password-reset-page", kwargs={"uidb64": uid, "token": token})
    return request.build_absolute_uri(path) if request is not None else path


def user_password_reset_link_send(*, user: User, request: HttpRequest | None) -> None:
    """Email the user a one-time password-reset link (Django's ``default_token_generator``).

    The link stops working once the password changes or after ``PASSWORD_RESET_TIMEOUT``.
    Every token of the user is revoked (``user_tokens_revoke_all``). Raises ``EmailNotSent`` when the mail
    could not be handed to the email backend.
    """
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    url = password_reset_url(request=request, uid=uid, token=token)
    hours = round(settings.PASSWORD_RESET_TIMEOUT / 3600)
    body = (
        f"Hello {user.get_short_name()},\n\n"
        f"An administrator started a password reset for your marketapp account ({user.email}).\n"
        f"Choose a new password here (the link works once, for {hours} hours):\n\n{url}\n"
    )
    try:
        send_mail("Reset your marketapp password", body, None, [user.email])
    except OSError as exc:  # smtplib.SMTPException is an OSError
        logger.warning("password reset email to user %s not sent: %r", user.pk, exc)
        raise EmailNotSent(str(exc)) from exc
    user_tokens_revoke_all(user=user)


def password_reset_user(*, uid: str, token: str) -> User | None:
    """The user a reset link belongs to while the link is valid, else ``None``."""
    try:
        user_id = int(force_str(urlsafe_base64_decode(uid)))
    except (TypeError, ValueError, OverflowError, UnicodeDecodeError):
        return None
    if not 0 < user_id < 2**63:
        return None
    user = user_get(user_id=user_id)
    if user is None or not default_token_generator.check_token(user, token):
        return None
    return user


@transaction.atomic
def user_password_reset_confirm(*, uid: str, token: str, new_password: str) -> User:
    """Set a new password through a reset link; the link then stops working.

    Raises ``ValidationError`` for an invalid or expired link (``token``) or a password Django's
    validators refuse (``new_password``). Every refresh token of the user is blacklisted.
    """
    user = password_reset_user(uid=uid, token=token)
    if user is None:
        raise ValidationError({"token": [RESET_LINK_INVALID_MESSAGE]})
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from exc
    _password_set(user=user, password=new_password)
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
