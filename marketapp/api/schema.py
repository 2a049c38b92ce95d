"""OpenAPI helpers shared by every app: the error document and its responses.

Views document their 4xx answers with ``error_responses(400, 401, 403)`` so the schema shows
the one error format (``marketapp.api.errors.error_body``) instead of DRF's default shapes.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input; `errors` maps each field to its messages.",
    401: "Authentication credentials were missing, invalid or expired.",
    403: "The authenticated user may not do this.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflicts with an existing record.",
    429: "Too many requests; retry later.",
    500: "Internal server error.",
    502: "An upstream service failed.",
    503: "The service or a dependency is not available or not configured.",
}


class ErrorSerializer(serializers.Serializer):
    """The error document every endpoint returns: ``{"detail", "status_code"[, "errors"]}``."""

    detail = serializers.CharField()
    status_code = serializers.IntegerField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors by field (400 only).",
    )


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """OpenAPI responses in the error format for the given HTTP status codes."""
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=_DESCRIPTIONS.get(code, "Error.")) for code in codes
    }
