"""Admin for users: Django's UserAdmin adapted to email login and the role field."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm
from django.db import models

from core.admin_actions import AUDIT_FIELDS, AuditedAdminMixin

from . import services
from .models import User, Watchlist, WatchlistItem


def _status_action(modeladmin, request, queryset, status: str, verb: str) -> None:
    changed, refused = services.users_status_set(actor=request.user, users=queryset, status=status)
    modeladmin.message_user(request, f"{changed} user(s) {verb}.", messages.SUCCESS)
    if refused:
        modeladmin.message_user(request, "You cannot reject your own account.", messages.WARNING)


@admin.action(description="Approve selected users", permissions=["change"])
def approve_selected(modeladmin, request, queryset) -> None:
    """Let pending (or rejected) users in."""
    _status_action(modeladmin, request, queryset, User.Status.APPROVED, "approved")


@admin.action(description="Reject selected users", permissions=["change"])
def reject_selected(modeladmin, request, queryset) -> None:
    """Refuse the users; their tokens stop working."""
    _status_action(modeladmin, request, queryset, User.Status.REJECTED, "rejected")


class UserCreationAdminForm(BaseUserCreationForm):
    """Email plus password twice; the unique-email check (any case) comes from the model."""

    class Meta:
        model = User
        fields = ("email",)


class UserChangeAdminForm(UserChangeForm):
    """Shows the password hash summary with a link to the password change page."""

    class Meta:
        model = User
        fields = "__all__"
        field_classes = {}


@admin.register(User)
class UserAdmin(AuditedAdminMixin, DjangoUserAdmin):
    """Users keyed by email, with role and the audit timestamps."""

    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    list_display = (
        "email",
        "first_name",
        "last_name",
        "role",
        "status",
        "is_staff",
        "is_superuser",
        "is_active",
        "last_login",
    )
    list_filter = ("status", "role", "is_staff", "is_superuser", "is_active", "groups")
    actions = (*AuditedAdminMixin.actions, approve_selected, reject_selected)
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "profile_picture_url")}),
        (
            "Permissions",
            {"fields": ("role", "status", "is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined", *AUDIT_FIELDS)}),
    )
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class WatchlistItemInline(admin.TabularInline):
    """The instruments on a watchlist, in list order."""

    model = WatchlistItem
    extra = 0
    fields = ("instrument", "position", "is_active")
    autocomplete_fields = ("instrument",)


@admin.register(Watchlist)
class WatchlistAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Users' watchlists with their instruments inline."""

    list_display = ("name", "user", "item_count", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("name", "user__email")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    inlines = (WatchlistItemInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(item_total=models.Count("items"))

    @admin.display(description="Instruments", ordering="item_total")
    def item_count(self, obj: Watchlist) -> int:
        return obj.item_total
