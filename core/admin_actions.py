"""Admin pieces shared by every model that extends BaseModel: on/off actions and audit fields."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

AUDIT_FIELDS = ("created_at", "updated_at")


def set_active(*, queryset: QuerySet, is_active: bool) -> int:
    """Switch the rows of ``queryset`` on or off in one UPDATE; returns how many rows changed.

    ``QuerySet.update`` skips ``auto_now``, so ``updated_at`` is set here explicitly.
    """
    return queryset.exclude(is_active=is_active).update(is_active=is_active, updated_at=timezone.now())


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, count: int, state: str) -> None:
    opts = modeladmin.model._meta
    noun = opts.verbose_name if count == 1 else opts.verbose_name_plural
    modeladmin.message_user(request, f"{count} {noun} {state}.", messages.SUCCESS)


@admin.action(description="Activate selected %(verbose_name_plural)s", permissions=["change"])
def activate_selected(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Set ``is_active`` on the selected rows."""
    _report(modeladmin, request, set_active(queryset=queryset, is_active=True), "activated")


@admin.action(description="Deactivate selected %(verbose_name_plural)s", permissions=["change"])
def deactivate_selected(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Clear ``is_active`` on the selected rows."""
    _report(modeladmin, request, set_active(queryset=queryset, is_active=False), "deactivated")


class AuditedAdminMixin:
    """For the ModelAdmin of every BaseModel subclass (put it before ``admin.ModelAdmin``).

    Adds the activate/deactivate actions and shows ``created_at``/``updated_at`` read-only,
    whatever ``readonly_fields`` the subclass declares.
    """

    actions = (activate_selected, deactivate_selected)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        declared = tuple(super().get_readonly_fields(request, obj))
        return declared + tuple(f for f in AUDIT_FIELDS if f not in declared)
