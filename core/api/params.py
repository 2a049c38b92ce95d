"""Strict query-string parameters shared by every app's API."""

from __future__ import annotations

import django_filters
from django import forms
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def parse_bool(raw: str) -> bool:
    """``true/false``, ``1/0``, ``yes/no`` in any case; anything else is a ``ValueError``."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"'{raw}' is not a boolean; use true or false.")


class StrictBooleanField(forms.Field):
    """A boolean form field that rejects values it does not recognise.

    django-filter's own ``BooleanFilter`` turns ``?is_active=maybe`` into "no filter", which
    silently returns rows the client did not ask for.
    """

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        try:
            return parse_bool(str(value))
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc


@extend_schema_field(OpenApiTypes.BOOL)
class StrictBooleanFilter(django_filters.Filter):
    """``BooleanFilter`` with ``StrictBooleanField``: unknown values are a 400, not ignored."""

    field_class = StrictBooleanField


def query_flag(request: Request, name: str) -> bool:
    """A boolean query parameter (absent is false); an unrecognised value is a 400."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return False
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise ValidationError({name: [str(exc)]}) from exc
