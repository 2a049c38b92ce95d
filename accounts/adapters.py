"""django-allauth adapters: registration policy, Google profile data and the JWT hand-off.

A Google sign-in started at ``/auth/google/login`` carries ``GOOGLE_HANDOFF_STATE`` in allauth's
OAuth state. For such a flow the adapters answer errors in the API error format (instead of
allauth's HTML pages) and, once allauth has logged the user in, mark the session so that
``/auth/google/complete`` may hand out a JWT pair exactly once.
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.base.constants import AuthError
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from requests import RequestException

from accounts import google, services
from accounts.authentication import AccountNotApproved, user_access_check
from core.api.client_ip import client_address
from core.api.errors import error_body

logger = logging.getLogger(__name__)


def _is_handoff_state(state: dict | None) -> bool:
    return bool(state) and state.get("data") == google.GOOGLE_HANDOFF_STATE


def _error_response(status_code: int, detail: str) -> JsonResponse:
    return JsonResponse(error_body(detail, status_code), status=status_code)


_VERIFIED_FLAGS = ("email_verified", "verified_email")


def _provider_verified(login: SocialLogin, email: str) -> bool:
    """True when the provider's own data marks ``email`` verified with a real true value."""
    data = login.account.extra_data or {}
    if str(data.get("email") or "").lower() != email.lower():
        return False
    flags = [data[key] for key in _VERIFIED_FLAGS if key in data]
    return bool(flags) and all(flag is True or (isinstance(flag, str) and flag.lower() == "true") for flag in flags)


class AccountAdapter(DefaultAccountAdapter):
    """Account policy shared by the allauth pages and the API."""

    def get_client_ip(self, request: HttpRequest) -> str:
        """allauth's rate limits key on the same address as ours (``X-Forwarded-For`` only from ``TRUSTED_PROXIES``)."""
        return client_address(request) or "0.0.0.0"  # noqa: S104 - an address, not a bind

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.REGISTRATION_OPEN

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # An SMTP server that is down or refuses us is a 503 page, not an anonymous 500 (the same
        # answer for known and unknown addresses: allauth mails both).
        try:
            super().send_mail(template_prefix, email, context)
        except (OSError, smtplib.SMTPException) as exc:
            logger.warning("mail %s could not be sent: %r", template_prefix, exc)
            page = {"title": "Email not sent", "message": "The email could not be sent; try again later."}
            raise ImmediateHttpResponse(render(allauth_context.request, "unavailable.html", page, status=503)) from exc

    def new_user(self, request: HttpRequest):
        # Sign-up pages and Google sign-up make pending users when REGISTRATION_REQUIRES_APPROVAL is on.
        user = super().new_user(request)
        user.status = services.user_initial_status()
        return user

    def pre_login(self, request: HttpRequest, user, **kwargs) -> HttpResponse | None:
        response = super().pre_login(request, user, **kwargs)
        if response is not None:
            return response
        try:
            user_access_check(user)
        except AccountNotApproved as exc:
            from allauth.account.internal.stagekit import clear_login

            clear_login(request)
            sociallogin = (kwargs.get("signal_kwargs") or {}).get("sociallogin")
            if sociallogin is not None and _is_handoff_state(sociallogin.state):
                request.session.pop(google.GOOGLE_API_FLOW_SESSION_KEY, None)
                return _error_response(403, str(exc.detail))
            message = str(exc.detail).split(": ", 1)[-1]
            context = {"code": exc.account_code, "message": message[:1].upper() + message[1:]}
            return render(request, "account/account_not_approved.html", context, status=403)
        return None

    def post_login(
        self,
        request: HttpRequest,
        user,
        *,
        email_verification: str,
        signal_kwargs: dict[str, Any] | None,
        email: str | None,
        signup: bool,
        redirect_url: str | None,
    ) -> HttpResponse:
        response = super().post_login(
            request,
            user,
            email_verification=email_verification,
            signal_kwargs=signal_kwargs,
            email=email,
            signup=signup,
            redirect_url=redirect_url,
        )
        sociallogin = (signal_kwargs or {}).get("sociallogin")
        if sociallogin is not None and _is_handoff_state(sociallogin.state):
            google.google_login_mark_handoff(request=request, user=user)
        return response


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """Google sign-in: keeps the profile picture, honours REGISTRATION_OPEN, answers API flows in JSON."""

    def populate_user(self, request: HttpRequest, sociallogin: SocialLogin, data: dict):
        user = super().populate_user(request, sociallogin, data)
        # The manager lower-cases emails, but allauth saves the instance directly.
        user.email = (user.email or "").lower()
        user.profile_picture_url = self._picture_url(sociallogin)
        return user

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        super().pre_social_login(request, sociallogin)
        if sociallogin.is_existing:
            services.user_profile_picture_set(user=sociallogin.user, url=self._picture_url(sociallogin))

    def can_authenticate_by_email(self, login: SocialLogin, email: str) -> bool:
        # Link a sign-in to an existing account only through an address the provider itself
        # says is verified, strictly: allauth reads Google's flag with bool(), so "false" counts.
        return super().can_authenticate_by_email(login, email) and _provider_verified(login, email)

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        if settings.REGISTRATION_OPEN:
            return True
        if _is_handoff_state(sociallogin.state):
            request.session.pop(google.GOOGLE_API_FLOW_SESSION_KEY, None)
            raise ImmediateHttpResponse(_error_response(403, services.REGISTRATION_CLOSED_MESSAGE))
        return False

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider,
        error=None,
        exception=None,
        extra_context=None,
    ) -> None:
        state = (extra_context or {}).get("state")
        api_flow = request.session.pop(google.GOOGLE_API_FLOW_SESSION_KEY, False)
        if not (api_flow or _is_handoff_state(state)):
            return super().on_authentication_error(
                request, provider, error=error, exception=exception, extra_context=extra_context
            )
        logger.info("Google sign-in failed: error=%s exception=%r", error, exception)
        if isinstance(exception, RequestException):
            raise ImmediateHttpResponse(_error_response(502, "Google could not be reached; try again later."))
        if error == AuthError.CANCELLED:
            raise ImmediateHttpResponse(_error_response(401, "Google sign-in was cancelled."))
        if state is None:
            detail = (
                "Google sign-in failed: the sign-in state is missing or expired; start again at /auth/google/login."
            )
        else:
            detail = "Google sign-in failed: Google did not confirm the sign-in."
        raise ImmediateHttpResponse(_error_response(401, detail))

    @staticmethod
    def _picture_url(sociallogin: SocialLogin) -> str:
        picture = sociallogin.account.extra_data.get("picture")
        return picture if isinstance(picture, str) and picture.startswith("https://") else ""
