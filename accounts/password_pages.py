"""The server's own password-reset page, the target of emailed links when ``PASSWORD_RESET_URL`` is empty.

Django's reset views (the admin's templates, Django's password validators, the one-time token of
``default_token_generator``); setting the password also blacklists the user's refresh tokens.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import reverse_lazy

from accounts import services


class PasswordResetPageView(auth_views.PasswordResetConfirmView):
    """Choose a new password from an emailed link."""

    success_url = reverse_lazy("auth-password-reset-page-done")

    def form_valid(self, form):
        response = super().form_valid(form)
        services.user_refresh_tokens_blacklist(user=form.user)
        return response


class PasswordResetPageDoneView(auth_views.PasswordResetCompleteView):
    """The password was changed; a link to sign in."""
