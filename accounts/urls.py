"""URL routes of the accounts app: the seed design's ``/auth/...`` paths.

Each path also accepts a trailing slash, so a POST never meets an APPEND_SLASH redirect.
"""

from django.urls import re_path

from accounts import api, password_pages, user_api, watchlist_api

urlpatterns = [
    re_path(r"^auth/register(?:/)?$", api.RegisterView.as_view(), name="auth-register"),
    re_path(r"^auth/login(?:/)?$", api.LoginView.as_view(), name="auth-login"),
    re_path(r"^auth/refresh(?:/)?$", api.RefreshView.as_view(), name="auth-refresh"),
    re_path(r"^auth/logout(?:/)?$", api.LogoutView.as_view(), name="auth-logout"),
    re_path(r"^auth/logout-all(?:/)?$", api.LogoutAllView.as_view(), name="auth-logout-all"),
    re_path(r"^auth/me(?:/)?$", api.MeView.as_view(), name="auth-me"),
    re_path(r"^auth/change-password(?:/)?$", api.ChangePasswordView.as_view(), name="auth-change-password"),
    re_path(
        r"^auth/reset-password/confirm(?:/)?$",
        api.PasswordResetConfirmView.as_view(),
        name="auth-reset-password-confirm",
    ),
    re_path(
        r"^auth/reset-password/done/?$",
        password_pages.PasswordResetPageDoneView.as_view(),
        name="auth-password-reset-page-done",
    ),
    re_path(
        r"^auth/reset-password/(?P<uidb64>[0-9A-Za-z_\-]{1,64})/(?P<token>[0-9A-Za-z\-]{1,128})/?$",
        password_pages.PasswordResetPageView.as_view(),
        name="auth-password-reset-page",
    ),
    re_path(r"^auth/google/login(?:/)?$", api.GoogleLoginView.as_view(), name="auth-google-login"),
    re_path(r"^auth/google/complete(?:/)?$", api.GoogleCompleteView.as_view(), name="auth-google-complete"),
    re_path(r"^users/?$", user_api.UserListApi.as_view(), name="user-list"),
    re_path(r"^users/(?P<user_id>[0-9]{1,19})/?$", user_api.UserDetailApi.as_view(), name="user-detail"),
    re_path(
        r"^users/(?P<user_id>[0-9]{1,19})/reset-password/?$",
        user_api.UserPasswordResetApi.as_view(),
        name="user-reset-password",
    ),
    re_path(r"^watchlists/?$", watchlist_api.WatchlistListApi.as_view(), name="watchlist-list"),
    re_path(
        r"^watchlists/(?P<watchlist_id>[0-9]{1,18})/?$",
        watchlist_api.WatchlistDetailApi.as_view(),
        name="watchlist-detail",
    ),
    re_path(
        r"^watchlists/(?P<watchlist_id>[0-9]{1,18})/items/?$",
        watchlist_api.WatchlistItemListApi.as_view(),
        name="watchlist-item-list",
    ),
    re_path(
        r"^watchlists/(?P<watchlist_id>[0-9]{1,18})/items/(?P<instrument_id>[0-9]{1,18})/?$",
        watchlist_api.WatchlistItemDetailApi.as_view(),
        name="watchlist-item-detail",
    ),
]
