"""URL routes of the accounts app: the seed design's ``/auth/...`` paths.

Each path also accepts a trailing slash, so a POST never meets an APPEND_SLASH redirect.
"""

from django.urls import re_path

from accounts import api, watchlist_api

urlpatterns = [
    re_path(r"^auth/register(?:/)?$", api.RegisterView.as_view(), name="auth-register"),
    re_path(r"^auth/login(?:/)?$", api.LoginView.as_view(), name="auth-login"),
    re_path(r"^auth/refresh(?:/)?$", api.RefreshView.as_view(), name="auth-refresh"),
    re_path(r"^auth/logout(?:/)?$", api.LogoutView.as_view(), name="auth-logout"),
    re_path(r"^auth/me(?:/)?$", api.MeView.as_view(), name="auth-me"),
    re_path(r"^auth/google/login(?:/)?$", api.GoogleLoginView.as_view(), name="auth-google-login"),
    re_path(r"^auth/google/complete(?:/)?$", api.GoogleCompleteView.as_view(), name="auth-google-complete"),
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
