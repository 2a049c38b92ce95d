"""Admin pages of the seed's suggestions and suggestion types."""

from __future__ import annotations

from django.contrib import admin

from core.admin_actions import AuditedAdminMixin

from .models import Suggestion, SuggestionType


@admin.register(SuggestionType)
class SuggestionTypeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Categories users pick when they suggest something."""

    list_display = ("name", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name", "description")


@admin.register(Suggestion)
class SuggestionAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Users' suggestions; the status is editable in the list."""

    list_display = ("title", "suggestion_type", "user", "status", "created_at")
    list_filter = ("status", "suggestion_type", "is_active")
    list_editable = ("status",)
    search_fields = ("title", "description", "user__email")
    list_select_related = ("suggestion_type", "user")
    raw_id_fields = ("user",)
