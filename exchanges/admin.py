"""Admin for exchanges, with their holidays and provider assignments inline."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin_actions import AUDIT_FIELDS, AuditedAdminMixin

from .models import Exchange, ExchangeHoliday


class ExchangeHolidayInline(admin.TabularInline):
    """Closed days and special hours, for exchanges without an exchange-calendars calendar."""

    model = ExchangeHoliday
    fields = ("date", "name", "is_closed", "open_time", "close_time", "is_active")
    extra = 0


@admin.register(Exchange)
class ExchangeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Trading venues; session times are exchange-local."""

    list_display = (
        "code",
        "name",
        "country",
        "currency",
        "timezone",
        "hours",
        "is_open_24_hours",
        "calendar_code",
        "is_active",
    )
    list_filter = ("is_active", "is_open_24_hours", "country", "currency")
    search_fields = ("code", "name", "mic", "country")
    ordering = ("code",)
    fieldsets = (
        (None, {"fields": ("code", "name", "mic", "country", "currency", "timezone", "calendar_code", "is_active")}),
        (
            "Trading hours (exchange-local)",
            {"fields": ("is_open_24_hours", "pre_market_open", "market_open", "market_close", "post_market_close")},
        ),
        ("Audit", {"fields": AUDIT_FIELDS}),
    )
    inlines = (ExchangeHolidayInline,)  # ingestion.admin adds the provider mappings

    @admin.display(description="hours")
    def hours(self, obj: Exchange) -> str:
        if obj.is_open_24_hours:
            return "24h"
        if obj.market_open is None or obj.market_close is None:
            return "-"
        return f"{obj.market_open:%H:%M}-{obj.market_close:%H:%M}"


@admin.register(ExchangeHoliday)
class ExchangeHolidayAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Holidays across exchanges."""

    list_display = ("exchange", "date", "name", "is_closed", "open_time", "close_time", "is_active")
    list_filter = ("exchange", "is_closed", "is_active")
    search_fields = ("name", "exchange__code")
    date_hierarchy = "date"
    autocomplete_fields = ("exchange",)
    list_select_related = ("exchange",)
    ordering = ("-date",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExchangeHoliday]:
        # __str__ reads the exchange code, also on the change and delete pages.
        return super().get_queryset(request).select_related("exchange")
