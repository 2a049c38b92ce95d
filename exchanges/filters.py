"""Query-string filters of the exchange list."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from core.api.params import StrictBooleanFilter

from .models import Exchange


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
