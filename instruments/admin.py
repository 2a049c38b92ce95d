"""Admin for sectors, instrument types and instruments (with provider mappings inline)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from core.admin_actions import AUDIT_FIELDS, AuditedAdminMixin

from .models import Instrument, InstrumentType, Sector


@admin.register(Sector)
class SectorAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Industry sectors, with how many instruments use each."""

    list_display = ("name", "instrument_count", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Sector]:
        return super().get_queryset(request).annotate(instrument_count=Count("instruments"))

    @admin.display(description="instruments", ordering="instrument_count")
    def instrument_count(self, obj: Sector) -> int:
        return obj.instrument_count


@admin.register(InstrumentType)
class InstrumentTypeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Kinds of instrument (EQ, INDEX, ETF, FUT, OPT, ...)."""

    list_display = ("code", "name", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("code", "name")


@admin.register(Instrument)
class InstrumentAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Instruments by exchange and symbol; provider mappings are edited inline."""

    list_display = (
        "symbol",
        "name",
        "exchange",
        "instrument_type",
        "sector",
        "isin",
        "currency",
        "record_data",
        "blacklisted",
        "delisted",
        "is_active",
    )
    list_filter = ("exchange", "instrument_type", "sector", "record_data", "blacklisted", "delisted", "is_active")
    search_fields = ("symbol", "name", "isin")
    autocomplete_fields = ("exchange", "sector", "instrument_type")
    list_select_related = ("exchange", "instrument_type", "sector")
    # A scrip-master import makes this table large; an exact COUNT(*) per page is not worth it.
    show_full_result_count = False
    fieldsets = (
        (
            None,
            {"fields": ("exchange", "symbol", "name", "instrument_type", "sector", "isin", "currency", "is_active")},
        ),
        ("Trading", {"fields": ("lot_size", "tick_size")}),
        ("Derivatives", {"fields": ("expiry", "strike", "option_type"), "classes": ("collapse",)}),
        ("Streaming", {"fields": ("record_data", "blacklisted", "delisted")}),
        ("Audit", {"fields": AUDIT_FIELDS}),
    )
    inlines = ()  # ingestion.admin adds the provider mappings

    def get_queryset(self, request: HttpRequest) -> QuerySet[Instrument]:
        # __str__ reads the exchange code, so autocomplete results and change pages join it too.
        # (The changelist applies list_select_related only when no select_related is set yet.)
        return super().get_queryset(request).select_related(*self.list_select_related)
