"""URL routes of the accounts app: the seed design's ``/auth/...`` paths.

Each path also accepts a trailing slash, so a POST never meets an APPEND_SLASH redirect.
"""

from django.urls import re_path

from accounts import api

urlpatterns = [
    re_path(r"^auth/register(?:/)?$", api.RegisterView.as_view(), name="auth-register"),
    re_path(r"^auth/login(?:/)?$", api.LoginView.as_view(), name="auth-login"),
    re_path(r"^auth/refresh(?:/)?$", api.RefreshView.as_view(), name="auth-refresh"),
    re_path(r"^auth/logout(?:/)?$", api.LogoutView.as_view(), name="auth-logout"),
    re_path(r"^auth/me(?:/)?$", api.MeView.as_view(), name="auth-me"),
    re_path(r"^auth/google/login(?:/)?$", api.GoogleLoginView.as_view(), name="auth-google-login"),
    re_path(r"^auth/google/complete(?:/)?$", api.GoogleCompleteView.as_view(), name="auth-google-complete"),
]
