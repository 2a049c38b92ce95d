"""Query-string filters of the exchange list, and a strict boolean filter the other apps reuse."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from .models import Exchange

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


class ExchangeFilter(django_filters.FilterSet):
    """``country``, ``currency``, ``is_active`` match exactly (any case); ``search`` looks in name and code."""

    country = django_filters.CharFilter(field_name="country", lookup_expr="iexact", help_text="Country, e.g. India.")
    currency = django_filters.CharFilter(
        field_name="currency", lookup_expr="iexact", help_text="ISO 4217 code, e.g. INR."
    )
    is_active = StrictBooleanFilter(field_name="is_active", help_text="true or false.")
    search = django_filters.CharFilter(method="filter_search", help_text="Part of the name or code.")

    class Meta:
        model = Exchange
        fields = ["country", "currency", "is_active", "search"]

    def filter_search(self, queryset: QuerySet[Exchange], name: str, value: str) -> QuerySet[Exchange]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(code__icontains=value))
