"""Admin for price history. The bar tables are the largest in the database: no exact counts,
no DISTINCT scans for filters, instrument picked by autocomplete, search by symbol prefix."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin_actions import AuditedAdminMixin

from .models import PriceHistoryDaily, PriceHistoryIntraday

# Stored intervals: 1-minute bars from the engine, coarser ones only from history backfills.
INTRADAY_INTERVALS = ("1m", "5m", "15m", "1h")


class IntervalListFilter(admin.SimpleListFilter):
    """Bar interval from a fixed list (a SELECT DISTINCT over all bars would scan the table).

    Any other stored interval still filters through the URL, e.g. ``?interval=2m``.
    """

    title = "interval"
    parameter_name = "interval"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        chosen = self.value()
        intervals = INTRADAY_INTERVALS + ((chosen,) if chosen and chosen not in INTRADAY_INTERVALS else ())
        return [(i, i) for i in intervals]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(interval=self.value()) if self.value() else queryset


class BarAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """What both bar tables share (``ingestion`` adds the provider column and filter on top)."""

    search_fields = ("^instrument__symbol",)
    search_help_text = "Instrument symbol (prefix)."
    autocomplete_fields = ("instrument",)
    list_select_related = ("instrument__exchange",)
    show_full_result_count = False
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Rows print their instrument as EXCHANGE:SYMBOL: join the exchange.
        return super().get_queryset(request).select_related(*self.list_select_related)


@admin.register(PriceHistoryIntraday)
class PriceHistoryIntradayAdmin(BarAdmin):
    """Intraday bars; ``timestamp`` is the bar's open instant in UTC."""

    list_display = ("instrument", "interval", "timestamp", "open", "high", "low", "close", "volume", "source_id")
    list_filter = (IntervalListFilter, "is_active")
    date_hierarchy = "timestamp"
    ordering = ("-timestamp",)


@admin.register(PriceHistoryDaily)
class PriceHistoryDailyAdmin(BarAdmin):
    """Daily bars; ``date`` is the trading date in the exchange's time zone."""

    list_display = (
        "instrument",
        "date",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "adj_close",
        "source_id",
        "from_rollup",
    )
    list_filter = ("from_rollup", "is_active")
    date_hierarchy = "date"
    ordering = ("-date",)
