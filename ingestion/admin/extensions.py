"""The feed's parts of the lower apps' admin pages, attached from here.

``exchanges``, ``instruments`` and ``marketdata`` register their admins without knowing any
provider; this module re-registers each with a subclass that adds the feed's part: the
provider-mapping inlines under an exchange and an instrument, and the providing feed's code
(with a filter) on the price-history changelists, where bars keep only a provider id.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest

from exchanges.admin import ExchangeAdmin
from exchanges.models import Exchange
from ingestion.models import Provider
from instruments.admin import InstrumentAdmin
from instruments.models import Instrument
from marketdata.admin import PriceHistoryDailyAdmin, PriceHistoryIntradayAdmin
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

from .common import ExchangeProviderMappingInline, ProviderInstrumentMappingInline, provider_choices


def _reregister(model, model_admin: type[admin.ModelAdmin]) -> None:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)


class ExchangeWithProvidersAdmin(ExchangeAdmin):
    inlines = (*ExchangeAdmin.inlines, ExchangeProviderMappingInline)


class InstrumentWithProvidersAdmin(InstrumentAdmin):
    inlines = (*InstrumentAdmin.inlines, ProviderInstrumentMappingInline)


class BarSourceListFilter(admin.SimpleListFilter):
    """Bars by the provider that wrote them, listed by code (credentials never loaded)."""

    title = "source"
    parameter_name = "source__id__exact"  # the URL the foreign-key filter used: links keep working

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(pk), code) for pk, code in provider_choices().order_by("code").values_list("pk", "code")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(source_id=int(value)) if value.isdigit() else queryset.none()


class BarSourceMixin:
    """The provider's code beside each bar: one subquery on the small provider table per page row."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        code = Provider.objects.filter(pk=OuterRef("source_id")).values("code")[:1]
        return super().get_queryset(request).annotate(source_code=Subquery(code))

    @admin.display(description="source", ordering="source_code")
    def source(self, obj) -> str:
        return getattr(obj, "source_code", None) or "-"


def _with_source(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple("source" if c == "source_id" else c for c in columns)


class IntradayWithSourceAdmin(BarSourceMixin, PriceHistoryIntradayAdmin):
    list_display = _with_source(PriceHistoryIntradayAdmin.list_display)
    list_filter = (*PriceHistoryIntradayAdmin.list_filter, BarSourceListFilter)


class DailyWithSourceAdmin(BarSourceMixin, PriceHistoryDailyAdmin):
    list_display = _with_source(PriceHistoryDailyAdmin.list_display)
    list_filter = (*PriceHistoryDailyAdmin.list_filter, BarSourceListFilter)


_reregister(Exchange, ExchangeWithProvidersAdmin)
_reregister(Instrument, InstrumentWithProvidersAdmin)
_reregister(PriceHistoryIntraday, IntradayWithSourceAdmin)
_reregister(PriceHistoryDaily, DailyWithSourceAdmin)
