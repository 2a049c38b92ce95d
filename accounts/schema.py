"""OpenAPI description of the approving authentication classes: the same schemes as simplejwt's and DRF's."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class ApprovedJWTScheme(SimpleJWTScheme):
    """``ApprovedJWTAuthentication`` takes simplejwt's bearer tokens (component ``jwtAuth``)."""

    target_class = "accounts.authentication.ApprovedJWTAuthentication"


class ApprovedSessionScheme(SessionScheme):
    """``ApprovedSessionAuthentication`` reads Django's session cookie (component ``cookieAuth``)."""

    target_class = "accounts.authentication.ApprovedSessionAuthentication"
