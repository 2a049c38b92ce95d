"""The seed service's REST paths, mounted under ``SEED_COMPAT_PREFIX`` when ``SEED_COMPAT=true``.

Each area's module holds its own ``urlpatterns``; paths are matched with or without the
trailing slash, without redirects (the seed front end sends both spellings, and a redirect
breaks a preflighted cross-origin request).
"""

from seedcompat import (
    auth_api,
    exchanges_api,
    instruments_api,
    marketdata_api,
    providers_api,
    reference_api,
    suggestions_api,
    users_api,
    watchlists_api,
)

urlpatterns = [
    *auth_api.urlpatterns,
    *users_api.urlpatterns,
    *exchanges_api.urlpatterns,
    *providers_api.urlpatterns,
    *instruments_api.urlpatterns,
    *reference_api.urlpatterns,
    *suggestions_api.urlpatterns,
    *marketdata_api.urlpatterns,
    *watchlists_api.urlpatterns,
]
