"""REST API of providers: ``/providers/`` and ``/providers/{id}`` (admin only).

Admins only, reads too: settings reveal endpoints and accounts. Credentials are write-only:
answers carry ``credentials_set`` and never the values. The stream controls
(``/providers/{id}/start``, ``/stop``, ``/status``) come from ``ingestion.api.streams``; the
mappings of a provider live in ``ingestion.api.mappings``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_view
from rest_framework import serializers

from core.api.pagination import LimitOffsetPagination
from core.api.permissions import IsAdminRole
from core.api.serializers import StrictFieldsMixin
from ingestion.api.crud import _crud_schema, _CrudViewSet
from ingestion.api.streams import ProviderStreamActions
from ingestion.models import Provider
from ingestion.selectors import provider_list
from ingestion.services import provider_create, provider_delete, provider_update

# --- serializers -----------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A string and nothing else: DRF's ``CharField`` would turn ``123`` into ``"123"``."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ProviderOutputSerializer(serializers.ModelSerializer):
    """A provider; ``credentials_set`` says whether credentials are stored, never what they are."""

    credentials_set = serializers.BooleanField(help_text="Whether credentials are stored (never shown).")
    effective_settings = serializers.JSONField(help_text="settings over the defaults of the provider's kind.")

    class Meta:
        model = Provider
        fields = [
            "id",
            "name",
            "code",
            "kind",
            "settings",
            "effective_settings",
            "credentials_set",
            "rate_limit",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProviderInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to create or replace (PUT) a provider; PATCH sends any subset."""

    name = serializers.CharField(max_length=100)
    code = serializers.CharField(max_length=16, help_text="Unique regardless of case: YF, DHAN, SIM, REPLAY.")
    kind = serializers.ChoiceField(choices=Provider.Kind.choices)
    settings = serializers.JSONField(default=dict, help_text="A JSON object: feed_url, rest_url, mode, ...")
    credentials = serializers.DictField(
        child=StrictCharField(allow_blank=True, trim_whitespace=False),
        write_only=True,
        required=False,
        help_text="Write-only JSON object of strings (e.g. client_id, access_token); replaces the stored one. "
        "Send {} to clear.",
    )
    rate_limit = serializers.FloatField(min_value=0.001, max_value=10_000, default=5.0, help_text="REST requests/s.")
    is_active = serializers.BooleanField(default=True)

    def validate_settings(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Settings must be a JSON object.")
        return value


class ProviderSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Provider
        fields = ["id", "code", "name", "kind"]


@extend_schema_view(
    **_crud_schema("provider", "providers", ProviderOutputSerializer, ProviderInputSerializer, read=(400, 401, 403))
)
class ProviderViewSet(ProviderStreamActions, _CrudViewSet):
    """Providers: admins only, for reads too."""

    permission_classes = [IsAdminRole]
    serializer_class = ProviderOutputSerializer
    input_serializer_class = ProviderInputSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        return provider_list()

    def perform_create_service(self, data: dict) -> Provider:
        return provider_create(**data)

    def perform_update_service(self, obj: Provider, data: dict) -> Provider:
        return provider_update(provider=obj, data=data)

    def perform_delete_service(self, obj: Provider) -> None:
        provider_delete(provider=obj)
