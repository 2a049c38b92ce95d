"""REST API of the provider mappings.

``/exchange/{id}/providers`` (which providers serve an exchange: users read, admins write) and
``/providers/{id}/instruments`` (how a provider names instruments, admin only).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import serializers
from rest_framework.request import Request

from core.api.pagination import LimitOffsetPagination
from core.api.permissions import IsAdminRole
from core.api.serializers import StrictFieldsMixin
from exchanges.models import Exchange
from ingestion.api.crud import _crud_schema, _CrudViewSet
from ingestion.api.providers import ProviderSummarySerializer
from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from ingestion.selectors import exchange_provider_mapping_list, provider_instrument_mapping_list
from ingestion.services import (
    exchange_provider_mapping_create,
    exchange_provider_mapping_delete,
    exchange_provider_mapping_update,
    provider_instrument_mapping_create,
    provider_instrument_mapping_delete,
    provider_instrument_mapping_update,
)
from instruments.api import IdOrCodeRelatedField
from instruments.models import Instrument


class ExchangeProviderMappingOutputSerializer(serializers.ModelSerializer):
    """One provider serving an exchange."""

    provider = ProviderSummarySerializer()
    exchange = serializers.IntegerField(source="exchange_id")

    class Meta:
        model = ExchangeProviderMapping
        fields = ["id", "exchange", "provider", "is_primary", "priority", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class ExchangeProviderMappingInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to add (POST), replace (PUT) or change (PATCH) an exchange's provider."""

    provider = IdOrCodeRelatedField(slug_field="code", queryset=Provider.objects.all(), help_text="Id or code.")
    is_primary = serializers.BooleanField(
        default=False, help_text="The provider to stream from; making one primary demotes the previous primary."
    )
    priority = serializers.IntegerField(
        min_value=0, max_value=32767, default=100, help_text="Fallback order, lower first."
    )
    is_active = serializers.BooleanField(default=True)


class InstrumentSummarySerializer(serializers.ModelSerializer):
    exchange = serializers.CharField(source="exchange.code")

    class Meta:
        model = Instrument
        fields = ["id", "symbol", "exchange"]


class ProviderInstrumentMappingOutputSerializer(serializers.ModelSerializer):
    """How the provider names one instrument."""

    provider = serializers.CharField(source="provider.code")
    instrument = InstrumentSummarySerializer()

    class Meta:
        model = ProviderInstrumentMapping
        fields = ["id", "provider", "instrument", "search_code", "segment", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class ProviderInstrumentMappingInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to add (POST), replace (PUT) or change (PATCH) a provider's instrument mapping."""

    instrument = serializers.PrimaryKeyRelatedField(queryset=Instrument.objects.all(), help_text="Instrument id.")
    search_code = serializers.CharField(max_length=64, help_text="e.g. Dhan security id 2885, Yahoo RELIANCE.NS.")
    segment = serializers.CharField(max_length=16, allow_blank=True, default="", help_text="e.g. NSE_EQ (Dhan).")
    is_active = serializers.BooleanField(default=True)


EXCHANGE_ID = OpenApiParameter("exchange_id", int, OpenApiParameter.PATH, description="Exchange id.")
PROVIDER_ID = OpenApiParameter("provider_id", int, OpenApiParameter.PATH, description="Provider id.")


@extend_schema_view(
    **_crud_schema(
        "provider of the exchange",
        "providers of the exchange",
        ExchangeProviderMappingOutputSerializer,
        ExchangeProviderMappingInputSerializer,
        read=(401,),
        parameters=[EXCHANGE_ID],
    )
)
class ExchangeProviderMappingViewSet(_CrudViewSet):
    """The providers serving one exchange: users read, admins write."""

    # Tells the schema generator the model; get_queryset() narrows to the exchange in the URL.
    queryset = ExchangeProviderMapping.objects.none()
    lookup_url_kwarg = "mapping_id"
    serializer_class = ExchangeProviderMappingOutputSerializer
    input_serializer_class = ExchangeProviderMappingInputSerializer

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        # An unknown exchange is a 404 for every method, before the body is validated.
        self.exchange()

    def exchange(self) -> Exchange:
        if not hasattr(self, "_exchange"):
            self._exchange = get_object_or_404(Exchange, pk=self.kwargs["exchange_id"])
        return self._exchange

    def get_queryset(self):
        return exchange_provider_mapping_list(exchange=self.exchange())

    def perform_create_service(self, data: dict) -> ExchangeProviderMapping:
        return exchange_provider_mapping_create(exchange=self.exchange(), **data)

    def perform_update_service(self, obj: ExchangeProviderMapping, data: dict) -> ExchangeProviderMapping:
        return exchange_provider_mapping_update(mapping=obj, data=data)

    def perform_delete_service(self, obj: ExchangeProviderMapping) -> None:
        exchange_provider_mapping_delete(mapping=obj)


@extend_schema_view(
    **_crud_schema(
        "instrument mapping of the provider",
        "instrument mappings of the provider",
        ProviderInstrumentMappingOutputSerializer,
        ProviderInstrumentMappingInputSerializer,
        read=(400, 401, 403),
        parameters=[PROVIDER_ID],
    )
)
class ProviderInstrumentMappingViewSet(_CrudViewSet):
    """How one provider names instruments: admins only, like the provider itself."""

    permission_classes = [IsAdminRole]
    # Tells the schema generator the model; get_queryset() narrows to the provider in the URL.
    queryset = ProviderInstrumentMapping.objects.none()
    lookup_url_kwarg = "mapping_id"
    serializer_class = ProviderInstrumentMappingOutputSerializer
    input_serializer_class = ProviderInstrumentMappingInputSerializer
    pagination_class = LimitOffsetPagination

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        # An unknown provider is a 404 for every method, before the body is validated.
        self.provider()

    def provider(self) -> Provider:
        if not hasattr(self, "_provider"):
            self._provider = get_object_or_404(Provider, pk=self.kwargs["provider_id"])
        return self._provider

    def get_queryset(self):
        return provider_instrument_mapping_list(provider=self.provider())

    def perform_create_service(self, data: dict) -> ProviderInstrumentMapping:
        return provider_instrument_mapping_create(provider=self.provider(), **data)

    def perform_update_service(self, obj: ProviderInstrumentMapping, data: dict) -> ProviderInstrumentMapping:
        return provider_instrument_mapping_update(mapping=obj, data=data)

    def perform_delete_service(self, obj: ProviderInstrumentMapping) -> None:
        provider_instrument_mapping_delete(mapping=obj)
