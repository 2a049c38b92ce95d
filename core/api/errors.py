"""One error format for every endpoint: ``{"detail": "...", "status_code": N}``.

Validation errors add ``"errors": {field: [messages]}``. Unknown API paths (404) and wrong
methods (405) answer in the same shape through ``json_404`` / the DRF handler.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    """409: the request clashes with the current state of the resource."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


def error_body(detail: str, status_code: int, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The error document every endpoint returns."""
    body: dict[str, Any] = {"detail": detail, "status_code": status_code}
    if errors:
        body["errors"] = errors
    return body


def _flatten(data: Any) -> dict[str, list[str]]:
    """Turn DRF's nested error structure into ``{field: [messages]}``."""
    if isinstance(data, dict):
        out: dict[str, list[str]] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                for sub, msgs in _flatten(value).items():
                    out[f"{key}.{sub}"] = msgs
            elif isinstance(value, list):
                msgs: list[str] = []
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        for sub, sub_msgs in _flatten(item).items():
                            out[f"{key}[{i}].{sub}"] = sub_msgs
                    else:
                        msgs.append(str(item))
                if msgs:
                    out[str(key)] = msgs
            else:
                out[str(key)] = [str(value)]
        return out
    if isinstance(data, list):
        return {"non_field_errors": [str(x) for x in data]}
    return {"non_field_errors": [str(data)]}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF exception handler that renders every error in the documented shape."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, IntegrityError):
        exc = exceptions.ValidationError({"non_field_errors": ["This conflicts with an existing record."]})
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = response.status_code
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        if list(errors) == ["non_field_errors"]:
            detail = " ".join(errors["non_field_errors"])
        else:
            detail = "Invalid input: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        response.data = error_body(detail, code, errors)
    else:
        data = response.data
        detail = data.get("detail") if isinstance(data, dict) else None
        response.data = error_body(str(detail or exc), code)
    return response


def json_error(request, status_code: int, detail: str) -> JsonResponse:
    """A plain Django response in the error format (used by handler404/handler500)."""
    return JsonResponse(error_body(detail, status_code), status=status_code)


def handler404(request, exception=None) -> JsonResponse:
    return json_error(request, status.HTTP_404_NOT_FOUND, "Not found.")


def handler500(request) -> JsonResponse:
    return json_error(request, status.HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error.")


def handler400(request, exception=None) -> JsonResponse:
    return json_error(request, status.HTTP_400_BAD_REQUEST, "Bad request.")


def handler403(request, exception=None) -> JsonResponse:
    return json_error(request, status.HTTP_403_FORBIDDEN, "Permission denied.")
