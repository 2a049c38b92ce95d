"""Reads of instruments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from .filters import InstrumentFilter
from .models import Instrument


def instrument_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Instrument]:
    """Instruments with their exchange, type, sector and provider mappings loaded in bulk.

    ``filters`` takes the keys of ``InstrumentFilter`` (``exchange_id``, ``exchange``, ``symbol``,
    ``search``, ``sector``, ``instrument_type``, ``is_active``); other keys are ignored. Invalid
    values raise ``ValidationError`` keyed by filter name rather than being dropped.
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
