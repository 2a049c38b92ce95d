"""Changelists of the exchange and instrument mappings, and the read-only populate jobs."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin_actions import AUDIT_FIELDS, AuditedAdminMixin
from ingestion.models import ExchangeProviderMapping, PopulateJob, ProviderInstrumentMapping

from .common import ProviderListFilter, RelatedChoicesMixin


@admin.register(ExchangeProviderMapping)
class ExchangeProviderMappingAdmin(AuditedAdminMixin, RelatedChoicesMixin, admin.ModelAdmin):
    """Exchange to provider assignments (primary first, then by priority)."""

    list_display = ("exchange", "provider", "is_primary", "priority", "is_active")
    list_filter = (("provider", ProviderListFilter), "exchange", "is_primary", "is_active")
    search_fields = ("exchange__code", "exchange__name", "provider__code", "provider__name")
    autocomplete_fields = ("exchange", "provider")
    list_select_related = ("exchange", "provider")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExchangeProviderMapping]:
        return super().get_queryset(request).select_related(*self.list_select_related).defer("provider__credentials")


@admin.register(ProviderInstrumentMapping)
class ProviderInstrumentMappingAdmin(AuditedAdminMixin, RelatedChoicesMixin, admin.ModelAdmin):
    """Provider-specific instrument codes; may hold a whole scrip master, so counts are skipped."""

    list_display = ("instrument", "provider", "segment", "search_code", "is_active")
    list_filter = (("provider", ProviderListFilter), "segment", "instrument__exchange", "is_active")
    search_fields = ("search_code", "instrument__symbol", "instrument__name")
    autocomplete_fields = ("instrument", "provider")
    list_select_related = ("instrument__exchange", "provider")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderInstrumentMapping]:
        return super().get_queryset(request).select_related(*self.list_select_related).defer("provider__credentials")


@admin.register(PopulateJob)
class PopulateJobAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Seeding, import and history jobs queued through ``/populate/``: read-only records."""

    list_display = ("id", "kind", "state", "progress", "message", "created_by", "created_at", "finished_at")
    list_filter = ("kind", "state")
    search_fields = ("message",)
    date_hierarchy = "created_at"
    list_select_related = ("created_by",)
    readonly_fields = (
        "kind",
        "state",
        "params",
        "progress_done",
        "progress_total",
        "message",
        "errors",
        "started_at",
        "finished_at",
        "created_by",
        *AUDIT_FIELDS,
    )

    @admin.display(description="progress")
    def progress(self, job: PopulateJob) -> str:
        return f"{job.progress_done}/{job.progress_total}" if job.progress_total else "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are queued through the API, which validates their arguments
