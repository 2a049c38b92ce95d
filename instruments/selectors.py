"""Reads of instruments, sectors and instrument types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from .filters import InstrumentFilter, InstrumentTypeFilter, SectorFilter
from .models import Instrument, InstrumentType, Sector


def instrument_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Instrument]:
    """Instruments with their exchange, type, sector and provider mappings loaded in bulk.

    ``filters`` takes the keys of ``InstrumentFilter`` (``exchange_id``, ``exchange``, ``symbol``,
    ``search``, ``sector``, ``instrument_type``, ``is_active``); other keys are ignored. Invalid
    values raise ``ValidationError`` keyed by filter name rather than being dropped. With
    ``search`` the rows come ranked (``instruments.search``), otherwise by exchange and symbol.
    """
    queryset = Instrument.objects.select_related("exchange", "instrument_type", "sector").prefetch_related(
        "provider_mappings__provider"
    )
    if not filters:
        return queryset
    filterset = InstrumentFilter(filters, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError(filterset.form.errors.as_data())
    return filterset.qs


def _filtered(queryset: QuerySet, filterset_class, filters: Mapping[str, Any] | None) -> QuerySet:
    if not filters:
        return queryset
    filterset = filterset_class(filters, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError(filterset.form.errors.as_data())
    return filterset.qs


def sector_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Sector]:
    """Sectors by name; ``filters`` takes ``search`` (in the name) and ``is_active``, validated."""
    return _filtered(Sector.objects.order_by("name", "pk"), SectorFilter, filters)


def instrument_type_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[InstrumentType]:
    """Instrument types by code; ``filters`` takes ``search`` (in the code or name) and ``is_active``."""
    return _filtered(InstrumentType.objects.order_by("code", "pk"), InstrumentTypeFilter, filters)
