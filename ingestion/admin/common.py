"""What the feed admin pages share: lean provider querysets and filters, the mapping inlines.

Provider querysets defer the encrypted column so lists, filters and choice widgets neither
decrypt every row nor break when the key changes.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from instruments.models import Instrument


def provider_choices() -> QuerySet[Provider]:
    """Providers for choice widgets and filters, without loading the encrypted credentials."""
    return Provider.objects.defer("credentials")


def credentials_status(provider: Provider) -> str:
    """A human summary of a provider's stored credentials that never includes their values."""
    if provider.pk is None:
        return "not set"
    try:
        stored = provider.credentials
    except ImproperlyConfigured:
        return "set, but unreadable with the current CREDENTIALS_KEY: enter new credentials or clear them"
    if not any(bool(v) for v in (stored or {}).values()):
        return "not set"
    return f"set (keys: {', '.join(sorted(stored))})"


class RelatedChoicesMixin:
    """Lean querysets for foreign keys to Provider (no credentials) and Instrument (with exchange).

    ``Instrument.__str__`` reads its exchange code, so without ``select_related`` every rendered
    choice costs a query.
    """

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs: Any):
        if db_field.related_model is Provider:
            kwargs.setdefault("queryset", provider_choices())
        elif db_field.related_model is Instrument:
            kwargs.setdefault("queryset", Instrument.objects.select_related("exchange"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ProviderListFilter(admin.RelatedFieldListFilter):
    """A sidebar filter on a provider foreign key that lists providers by code, undecrypted."""

    def field_choices(self, field, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[int, str]]:
        return list(provider_choices().order_by("code").values_list("pk", "code"))


class MappingInlineMixin(RelatedChoicesMixin):
    """Inline rows print themselves through their provider and exchange/instrument: join those."""

    row_select_related: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related(*self.row_select_related).defer("provider__credentials")


class ExchangeProviderMappingInline(MappingInlineMixin, admin.TabularInline):
    """Which providers serve an exchange; shown under both the exchange and the provider."""

    model = ExchangeProviderMapping
    fields = ("exchange", "provider", "is_primary", "priority", "is_active")
    autocomplete_fields = ("exchange", "provider")
    row_select_related = ("exchange", "provider")
    extra = 0


class ProviderInstrumentMappingInline(MappingInlineMixin, admin.TabularInline):
    """How each provider names this instrument (shown under the instrument)."""

    model = ProviderInstrumentMapping
    fields = ("provider", "segment", "search_code", "is_active")
    autocomplete_fields = ("provider",)
    row_select_related = ("instrument__exchange", "provider")
    extra = 0


class LimitedInlineFormSet(BaseInlineFormSet):
    """An inline formset that edits only the first ``limit`` existing rows.

    A provider can map hundreds of thousands of instruments; rendering them all would make its
    change page unusable. The rest are reached through the mapping changelist.
    """

    limit = 50

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_limited_queryset"):
            self._limited_queryset = super().get_queryset()[: self.limit]
        return self._limited_queryset


class ProviderInstrumentMappingLimitedInline(MappingInlineMixin, admin.TabularInline):
    """The first instrument mappings of a provider; the full list is linked from the form."""

    model = ProviderInstrumentMapping
    formset = LimitedInlineFormSet
    fields = ("instrument", "segment", "search_code", "is_active")
    autocomplete_fields = ("instrument",)
    row_select_related = ("instrument__exchange", "provider")
    verbose_name_plural = f"instrument mappings (first {LimitedInlineFormSet.limit})"
    extra = 0
