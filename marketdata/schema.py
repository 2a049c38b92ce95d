"""OpenAPI description of the history views' authentication (the same JWT bearer scheme)."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class CachedUserJWTScheme(SimpleJWTScheme):
    """``CachedUserJWTAuthentication`` takes the same bearer tokens as simplejwt's."""

    target_class = "marketdata.api.auth.CachedUserJWTAuthentication"
    # A component name of its own: spectacular keys components by class as well as name.
    name = "jwtAuthHistory"
