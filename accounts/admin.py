"""Admin for users: Django's UserAdmin adapted to email login and the role field."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm
from django.db import models

from core.admin_actions import AUDIT_FIELDS, AuditedAdminMixin

from .models import User, Watchlist, WatchlistItem


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
    list_display = ("email", "first_name", "last_name", "role", "is_staff", "is_superuser", "is_active", "last_login")
    list_filter = ("role", "is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "profile_picture_url")}),
        (
            "Permissions",
            {"fields": ("role", "is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
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
