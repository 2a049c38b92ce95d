"""Reads of providers and their mappings."""

from __future__ import annotations

from django.db.models import QuerySet

from exchanges.models import Exchange

from .models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping


def provider_list() -> QuerySet[Provider]:
    """Every provider, by code."""
    return Provider.objects.order_by("code")


def exchange_provider_mapping_list(*, exchange: Exchange) -> QuerySet[ExchangeProviderMapping]:
    """The providers serving ``exchange``: primary first, then by priority (lower first)."""
    return (
        ExchangeProviderMapping.objects.filter(exchange=exchange)
        .select_related("provider", "exchange")
        .order_by("-is_primary", "priority", "provider__code")
    )


def provider_instrument_mapping_list(*, provider: Provider) -> QuerySet[ProviderInstrumentMapping]:
    """How ``provider`` names instruments, by exchange code and symbol."""
    return (
        ProviderInstrumentMapping.objects.filter(provider=provider)
        .select_related("provider", "instrument__exchange")
        .order_by("instrument__exchange__code", "instrument__symbol", "pk")
    )
