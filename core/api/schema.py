"""OpenAPI helpers shared by every app: the error document and its responses.

Views document their 4xx answers with ``error_responses(400, 401, 403)`` so the schema shows
the one error format (``core.api.errors.error_body``) instead of DRF's default shapes.
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
    415: "Unsupported media type: send JSON.",
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


_LOCAL_TIME = {"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", "example": "09:15:00"}


def _local_times(node) -> None:
    """Wall-clock times here are exchange-local and carry no offset; JSON Schema's ``time``
    format demands one, so describe them by pattern instead."""
    if isinstance(node, dict):
        if node.get("format") == "time":
            del node["format"]
            node.update({k: v for k, v in _LOCAL_TIME.items() if k not in node})
        for value in node.values():
            _local_times(value)
    elif isinstance(node, list):
        for value in node:
            _local_times(value)


def postprocess_schema(result: dict, generator, request, public) -> dict:
    """Document the error answers every operation can give, in the one error format.

    Views list the errors specific to them; this adds the ones the framework gives anywhere:
    401/403 on authenticated operations, 404 where the path names a resource, 400 where the
    operation takes parameters or a body, 415 where it takes a body, 405 and 429 everywhere.
    """
    _local_times(result)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            codes = {405, 429}
            secured = operation.get("security") != [{}] and operation.get("security", [None]) != []
            if secured:
                codes |= {401, 403}
            if "{" in path:
                codes.add(404)
            if operation.get("parameters") or operation.get("requestBody"):
                codes.add(400)
            if operation.get("requestBody"):
                codes.add(415)
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                responses.setdefault(str(code), {"description": _DESCRIPTIONS[code], "content": error})
    return result
