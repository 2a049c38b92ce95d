"""The provider admin. Credentials are write-only: the form shows whether they are set and
accepts new ones, but never renders the stored value.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timezone import localtime
from django.views.decorators.debug import sensitive_post_parameters

from core.admin_actions import AUDIT_FIELDS, AuditedAdminMixin
from ingestion import streams
from ingestion.models import Provider

from .common import (
    ExchangeProviderMappingInline,
    LimitedInlineFormSet,
    ProviderInstrumentMappingLimitedInline,
    credentials_status,
)

CREDENTIALS_INPUT = "credentials_input"


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, not even the one just submitted (like a password)."""

    def format_value(self, value: Any) -> None:
        return None


class ProviderAdminForm(forms.ModelForm):
    """Provider form with write-only credentials: blank keeps, new JSON replaces, the box clears."""

    credentials_input = forms.CharField(
        label="Credentials",
        required=False,
        strip=True,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
    )
    clear_credentials = forms.BooleanField(
        label="Clear credentials",
        required=False,
        help_text="Remove the stored credentials.",
    )

    class Meta:
        model = Provider
        # Never the credentials model field: its widget would render the stored value.
        fields = ("code", "name", "kind", "rate_limit", "is_active", "settings")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The admin renders help text unescaped; the key names are data, so they go through format_html.
        self.fields[CREDENTIALS_INPUT].help_text = format_html(
            "Currently {}. Stored values are never shown. Enter a JSON object to replace them, e.g. {}; "
            "leave blank to keep them.",
            credentials_status(self.instance),
            '{"client_id": "...", "access_token": "..."}',
        )

    def clean_credentials_input(self) -> dict[str, Any] | None:
        raw = self.cleaned_data.get(CREDENTIALS_INPUT) or ""
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                "Credentials must be valid JSON (%(error)s).", code="invalid_json", params={"error": exc.msg}
            ) from exc
        if not isinstance(value, dict) or not value:
            raise forms.ValidationError(
                'Credentials must be a non-empty JSON object, e.g. {"access_token": "..."}; '
                "use 'Clear credentials' to remove them.",
                code="not_an_object",
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("clear_credentials") and cleaned.get(CREDENTIALS_INPUT):
            raise forms.ValidationError("Either enter new credentials or clear them, not both.")
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        # The credentials column is deferred when untouched, so a save leaves it as stored.
        if self.cleaned_data.get("clear_credentials"):
            self.instance.credentials = {}
        elif self.cleaned_data.get(CREDENTIALS_INPUT):
            self.instance.credentials = self.cleaned_data[CREDENTIALS_INPUT]
        return super().save(commit=commit)


class PersistenceLagMixin:
    """A line above the changelist: bars waiting for the saver and how long the oldest waited."""

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        from ingestion.saver import persist_lag_status

        try:
            lag = persist_lag_status()
        except Exception as exc:  # the store being down is itself worth showing, never a 500
            messages.warning(request, f"Persistence lag unknown: the tick store is unreachable ({type(exc).__name__}).")
        else:
            age = "none waiting" if lag["oldest_age_s"] is None else f"oldest waiting {lag['oldest_age_s']:.0f} s"
            text = f"Persistence: {lag['pending']} bar(s) not yet saved, {age}."
            (messages.info if lag["ok"] else messages.warning)(request, text)
        return super().changelist_view(request, extra_context)


@admin.register(Provider)
class ProviderAdmin(PersistenceLagMixin, AuditedAdminMixin, admin.ModelAdmin):
    """Providers with write-only credentials and their mappings inline."""

    form = ProviderAdminForm
    list_display = (
        "code",
        "name",
        "kind",
        "is_active",
        "credentials_set",
        "rate_limit",
        "stream_state",
        "stream_worker",
        "stream_last_tick",
        "stream_ticks_per_second",
        "stream_last_error",
        "updated_at",
    )
    list_filter = ("kind", "is_active")
    search_fields = ("code", "name")
    ordering = ("code",)
    readonly_fields = ("instrument_mappings_overview", "stream_overview")
    actions = (*AuditedAdminMixin.actions, "start_streams", "stop_streams")
    fieldsets = (
        (None, {"fields": ("code", "name", "kind", "rate_limit", "is_active")}),
        ("Settings", {"fields": ("settings",), "description": "Merged over the defaults of the provider kind."}),
        ("Credentials", {"fields": (CREDENTIALS_INPUT, "clear_credentials")}),
        ("Instrument mappings", {"fields": ("instrument_mappings_overview",)}),
        ("Stream", {"fields": ("stream_overview",)}),
        ("Audit", {"fields": AUDIT_FIELDS}),
    )
    inlines = (ExchangeProviderMappingInline, ProviderInstrumentMappingLimitedInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        # The raw token is enough to tell "set" in the list; decrypting happens per row, safely.
        return (
            super()
            .get_queryset(request)
            .defer("credentials")
            .annotate(credentials_raw=Cast("credentials", output_field=TextField()))
        )

    @method_decorator(sensitive_post_parameters(CREDENTIALS_INPUT))
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None):
        return super().add_view(request, form_url, extra_context)

    @method_decorator(sensitive_post_parameters(CREDENTIALS_INPUT))
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None):
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(boolean=True, description="credentials set")
    def credentials_set(self, obj: Provider) -> bool | None:
        """True/False; None (unknown) when the stored token cannot be decrypted with the current key."""
        field = Provider._meta.get_field("credentials")
        try:
            stored = field.to_python(getattr(obj, "credentials_raw", None))
        except ImproperlyConfigured:
            return None
        return any(bool(v) for v in stored.values())

    @admin.display(description="instrument mappings")
    def instrument_mappings_overview(self, obj: Provider) -> str:
        if obj.pk is None:
            return "Save the provider first."
        count = obj.instrument_mappings.count()
        url = reverse("admin:ingestion_providerinstrumentmapping_changelist") + f"?provider__id__exact={obj.pk}"
        return format_html(
            '{} mapping(s); the first {} are editable below. <a href="{}">Browse all</a>.',
            count,
            LimitedInlineFormSet.limit,
            url,
        )

    # --- the provider's stream in the Celery workers ----------------------------------------------

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        # One Redis round trip for the whole page; each row's columns read from it.
        page = list(changelist.result_list)
        statuses = streams.stream_statuses(providers=page)
        for provider in page:
            provider.stream_status_cache = statuses[provider.code]
        return changelist

    @staticmethod
    def _stream(obj: Provider) -> dict:
        if not hasattr(obj, "stream_status_cache"):
            obj.stream_status_cache = streams.stream_status(provider=obj)
        return obj.stream_status_cache

    @admin.display(description="stream")
    def stream_state(self, obj: Provider) -> str:
        status = self._stream(obj)
        return f"{status['state']} (degraded)" if status["degraded_reason"] else status["state"]

    @admin.display(description="worker")
    def stream_worker(self, obj: Provider) -> str:
        return self._stream(obj)["worker"] or "-"

    @admin.display(description="last tick")
    def stream_last_tick(self, obj: Provider) -> str:
        at = self._stream(obj)["last_tick_at"]
        return localtime(at).strftime("%Y-%m-%d %H:%M:%S") if at else "-"

    @admin.display(description="ticks/s")
    def stream_ticks_per_second(self, obj: Provider) -> str:
        rate = self._stream(obj)["ticks_per_second"]
        return "-" if rate is None else f"{rate:.1f}"

    @admin.display(description="last error")
    def stream_last_error(self, obj: Provider) -> str:
        status = self._stream(obj)
        token = status["token"] or {}
        renewal = f"token renewal failed: {token['renewal_error']}" if token.get("renewal") == "failed" else ""
        error = status["error"] or status["degraded_reason"] or renewal or status["last_error"]
        return format_html('<span title="{}">{}</span>', error, Truncator(error).chars(60)) if error else "-"

    @admin.display(description="stream")
    def stream_overview(self, obj: Provider) -> str:
        if obj.pk is None:
            return "Save the provider first."
        status = self._stream(obj)
        return format_html(
            "{} (wanted: {}); worker {}; last tick {}; {} ticks/s over the last minute; last error: {}. "
            "Start or stop it with the actions of the provider list.",
            status["state"],
            {True: "yes", False: "no", None: "unknown"}[status["desired"]],
            self.stream_worker(obj),
            self.stream_last_tick(obj),
            self.stream_ticks_per_second(obj),
            status["error"] or status["last_error"] or "none",
        ) + self._token_line(status["token"])

    @staticmethod
    def _token_line(token: dict | None) -> str:
        if token is None:
            return ""
        expires = localtime(token["expires_at"]).strftime("%Y-%m-%d %H:%M:%S") if token["expires_at"] else "unknown"
        renewal = {"ok": "renewed", "failed": f"renewal FAILED: {token['renewal_error']}"}.get(token["renewal"], "")
        return format_html(
            " Access token: {}expires {}{}.",
            "EXPIRED, " if token["expired"] else "",
            expires,
            f"; {renewal}" * bool(renewal),
        )

    @admin.action(description="Start stream", permissions=["change"])
    def start_streams(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        """Queue the selected providers' streams in the workers (and let the watchdog keep them)."""
        self._stream_command(request, queryset, streams.stream_start, "start requested")

    @admin.action(description="Stop stream", permissions=["change"])
    def stop_streams(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        """Stop the selected providers' streams and keep them stopped until started again."""
        self._stream_command(request, queryset, streams.stream_stop, "stop requested")

    def _stream_command(self, request: HttpRequest, queryset: QuerySet[Provider], command, done: str) -> None:
        succeeded = []
        for provider in queryset:
            try:
                command(provider=provider)
            except streams.StreamError as exc:  # Redis away, or an inactive provider: say so, never a 500
                self.message_user(request, f"{provider.code}: {exc}", messages.ERROR)
            else:
                succeeded.append(provider.code)
        if succeeded:
            self.message_user(request, f"Stream {done}: {', '.join(succeeded)}.", messages.SUCCESS)
