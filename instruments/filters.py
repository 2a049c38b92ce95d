"""Query-string filters of the instrument, sector and instrument type lists."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from core.api.params import StrictBooleanFilter

from .models import Instrument, InstrumentType, Sector
from .search import MAX_SEARCH_LENGTH, search_instruments

# Largest value of a PostgreSQL bigint: ids above it cannot exist and would make the query fail.
MAX_ID = 2**63 - 1


class IdFilter(django_filters.Filter):
    """A whole-number id; ``?exchange_id=abc`` or ``1.5`` is a 400, not "no filter"."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


def _id_or_name(queryset: QuerySet, value: str, *, id_field: str, name_field: str) -> QuerySet:
    """Digits select by id, anything else by name/code regardless of case."""
    value = value.strip()
    if not value:
        return queryset
    if value.isdigit():
        number = int(value)
        return queryset.filter(**{id_field: number}) if number <= MAX_ID else queryset.none()
    return queryset.filter(**{f"{name_field}__iexact": value})


class InstrumentFilter(django_filters.FilterSet):
    """The filters of ``GET /instruments/``; every value is validated, unknown values are a 400."""

    exchange_id = IdFilter(field_name="exchange_id", help_text="Exchange id.")
    exchange = django_filters.CharFilter(
        field_name="exchange__code", lookup_expr="iexact", help_text="Exchange code, any case (NSE)."
    )
    symbol = django_filters.CharFilter(field_name="symbol", lookup_expr="iexact", help_text="Exact symbol, any case.")
    search = django_filters.CharFilter(
        method="filter_search",
        max_length=MAX_SEARCH_LENGTH,
        help_text="Text anywhere in the symbol, name or ISIN, any case; ranked: exact symbol, symbol prefix, "
        "name prefix, then the rest.",
    )
    sector = django_filters.CharFilter(method="filter_sector", help_text="Sector id or name.")
    instrument_type = django_filters.CharFilter(
        method="filter_instrument_type", help_text="Instrument type id or code (EQ, INDEX, ...)."
    )
    is_active = StrictBooleanFilter(field_name="is_active", help_text="true or false.")

    class Meta:
        model = Instrument
        fields = ["exchange_id", "exchange", "symbol", "search", "sector", "instrument_type", "is_active"]

    def filter_search(self, queryset: QuerySet[Instrument], name: str, value: str) -> QuerySet[Instrument]:
        return search_instruments(queryset, value)

    def filter_sector(self, queryset: QuerySet[Instrument], name: str, value: str) -> QuerySet[Instrument]:
        return _id_or_name(queryset, value, id_field="sector_id", name_field="sector__name")

    def filter_instrument_type(self, queryset: QuerySet[Instrument], name: str, value: str) -> QuerySet[Instrument]:
        return _id_or_name(queryset, value, id_field="instrument_type_id", name_field="instrument_type__code")


class SectorFilter(django_filters.FilterSet):
    """The filters of ``GET /sectors/``."""

    search = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", max_length=100, help_text="Text anywhere in the name, any case."
    )
    is_active = StrictBooleanFilter(field_name="is_active", help_text="true or false.")

    class Meta:
        model = Sector
        fields = ["search", "is_active"]


class InstrumentTypeFilter(django_filters.FilterSet):
    """The filters of ``GET /instrument-types/``."""

    search = django_filters.CharFilter(
        method="filter_search", max_length=100, help_text="Text anywhere in the code or the name, any case."
    )
    is_active = StrictBooleanFilter(field_name="is_active", help_text="true or false.")

    class Meta:
        model = InstrumentType
        fields = ["search", "is_active"]

    def filter_search(self, queryset: QuerySet[InstrumentType], name: str, value: str) -> QuerySet[InstrumentType]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(code__icontains=value) | Q(name__icontains=value))
