"""REST API of providers and mappings.

``/providers/`` (admin only, reads too: settings reveal endpoints and accounts),
``/providers/{id}/instruments`` (how a provider names instruments, admin only) and
``/exchange/{id}/providers`` (which providers serve an exchange: users read, admins write).
``POST /providers/{id}/start`` and ``/stop`` and ``GET /providers/{id}/status`` control and show the
provider's stream in the Celery workers (admin only; see ``ingestion.streams``).
Credentials are write-only: answers carry ``credentials_set`` and never the values.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import Conflict
from core.api.pagination import LimitOffsetPagination
from core.api.permissions import IsAdminRole
from core.api.schema import error_responses
from exchanges.models import Exchange
from instruments.api import IdOrCodeRelatedField
from instruments.models import Instrument

from . import streams
from .models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from .selectors import exchange_provider_mapping_list, provider_instrument_mapping_list, provider_list
from .services import (
    exchange_provider_mapping_create,
    exchange_provider_mapping_delete,
    exchange_provider_mapping_update,
    provider_create,
    provider_delete,
    provider_instrument_mapping_create,
    provider_instrument_mapping_delete,
    provider_instrument_mapping_update,
    provider_update,
)

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


class ProviderInputSerializer(serializers.Serializer):
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


class ExchangeProviderMappingOutputSerializer(serializers.ModelSerializer):
    """One provider serving an exchange."""

    provider = ProviderSummarySerializer()
    exchange = serializers.IntegerField(source="exchange_id")

    class Meta:
        model = ExchangeProviderMapping
        fields = ["id", "exchange", "provider", "is_primary", "priority", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class ExchangeProviderMappingInputSerializer(serializers.Serializer):
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


class ProviderInstrumentMappingInputSerializer(serializers.Serializer):
    """What a client sends to add (POST), replace (PUT) or change (PATCH) a provider's instrument mapping."""

    instrument = serializers.PrimaryKeyRelatedField(queryset=Instrument.objects.all(), help_text="Instrument id.")
    search_code = serializers.CharField(max_length=64, help_text="e.g. Dhan security id 2885, Yahoo RELIANCE.NS.")
    segment = serializers.CharField(max_length=16, allow_blank=True, default="", help_text="e.g. NSE_EQ (Dhan).")
    is_active = serializers.BooleanField(default=True)


class StreamStatusSerializer(serializers.Serializer):
    """A provider's stream as the workers report it (``state`` unknown when Redis cannot be asked)."""

    provider = serializers.CharField()
    state = serializers.ChoiceField(choices=["running", "stopping", "starting", "stopped", "unknown"])
    running = serializers.BooleanField(allow_null=True, help_text="A worker holds the stream's lease.")
    desired = serializers.BooleanField(allow_null=True, help_text="False once an operator stopped it.")
    worker = serializers.CharField(allow_null=True, help_text="The worker holding the lease (node:pid).")
    pid = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True, help_text="The worker's latest report.")
    last_tick_at = serializers.DateTimeField(allow_null=True)
    ticks_per_second = serializers.FloatField(allow_null=True, help_text="Over the last minute.")
    ticks = serializers.IntegerField(allow_null=True, help_text="Ticks taken since the stream started.")
    stopped_at = serializers.DateTimeField(allow_null=True)
    stop_reason = serializers.CharField(allow_blank=True)
    last_error = serializers.CharField(allow_blank=True)
    last_error_at = serializers.DateTimeField(allow_null=True)
    clients = serializers.ListField(child=serializers.DictField(), help_text="Each feed client's status.")
    error = serializers.CharField(allow_blank=True, help_text="Why the state is unknown.")


class StreamsUnavailable(exceptions.APIException):
    """503: Redis, which coordinates the provider streams, is not configured or not reachable."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Provider streams are not available."
    default_code = "streams_unavailable"


# --- views ---------------------------------------------------------------------------------------


def _crud_schema(noun: str, plural: str, output, request, *, read: tuple[int, ...], parameters=None):
    """extend_schema_view arguments for a plain CRUD viewset; ``read`` are the error codes of reads."""
    params = {"parameters": parameters} if parameters else {}
    write_errors = (400, 401, 403, 404)
    return {
        "list": extend_schema(
            summary=f"List {plural}", responses={200: output(many=True), **error_responses(*read)}, **params
        ),
        "retrieve": extend_schema(
            summary=f"Get a {noun}", responses={200: output, **error_responses(*read, 404)}, **params
        ),
        "create": extend_schema(
            summary=f"Create a {noun} (admin)",
            request=request,
            responses={201: output, **error_responses(*write_errors)},
            **params,
        ),
        "update": extend_schema(
            summary=f"Replace a {noun} (admin)",
            request=request,
            responses={200: output, **error_responses(*write_errors)},
            **params,
        ),
        "partial_update": extend_schema(
            summary=f"Change some fields of a {noun} (admin)",
            request=request(partial=True),
            responses={200: output, **error_responses(*write_errors)},
            **params,
        ),
        "destroy": extend_schema(
            summary=f"Delete a {noun} (admin)",
            responses={204: None, **error_responses(401, 403, 404)},
            **params,
        ),
    }


class _CrudViewSet(viewsets.GenericViewSet):
    """Thin CRUD: input serializer in, service call, output serializer out.

    Subclasses name their serializers and implement ``perform_create_service`` and
    ``perform_update_service`` / ``perform_delete_service``.
    """

    input_serializer_class: type[serializers.Serializer]
    lookup_value_regex = "[0-9]+"

    def list(self, request: Request, **kwargs) -> Response:
        queryset = self.get_queryset()
        page = self.paginate_queryset(queryset)
        if page is None:
            return Response(self.get_serializer(queryset, many=True).data)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request: Request, **kwargs) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request: Request, **kwargs) -> Response:
        serializer = self.input_serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        obj = self.perform_create_service(serializer.validated_data)
        return Response(self.get_serializer(obj).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, **kwargs) -> Response:
        return self._update(request, partial=False)

    def partial_update(self, request: Request, **kwargs) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        obj = self.get_object()
        serializer = self.input_serializer_class(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        obj = self.perform_update_service(obj, serializer.validated_data)
        return Response(self.get_serializer(obj).data)

    def destroy(self, request: Request, **kwargs) -> Response:
        self.perform_delete_service(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def perform_create_service(self, data: dict):
        raise NotImplementedError

    def perform_update_service(self, obj, data: dict):
        raise NotImplementedError

    def perform_delete_service(self, obj) -> None:
        raise NotImplementedError


@extend_schema_view(
    **_crud_schema("provider", "providers", ProviderOutputSerializer, ProviderInputSerializer, read=(400, 401, 403))
)
class ProviderViewSet(_CrudViewSet):
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

    def _stream_answer(self, command=None) -> Response:
        provider = self.get_object()
        if command is not None:
            try:
                command(provider=provider)
            except streams.StreamUnavailable as exc:
                raise StreamsUnavailable(str(exc)) from exc
            except streams.StreamError as exc:
                raise Conflict(str(exc)) from exc
        answer = StreamStatusSerializer(streams.stream_status(provider=provider)).data
        return Response(answer, status=status.HTTP_200_OK if command is None else status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Start the provider's stream in a worker (admin)",
        request=None,
        responses={202: StreamStatusSerializer, **error_responses(401, 403, 404, 409, 503)},
    )
    @action(detail=True, methods=["post"], url_path="start")
    def start_stream(self, request: Request, pk: str | None = None) -> Response:
        return self._stream_answer(streams.stream_start)

    @extend_schema(
        summary="Stop the provider's stream and keep it stopped (admin)",
        request=None,
        responses={202: StreamStatusSerializer, **error_responses(401, 403, 404, 503)},
    )
    @action(detail=True, methods=["post"], url_path="stop")
    def stop_stream(self, request: Request, pk: str | None = None) -> Response:
        return self._stream_answer(streams.stream_stop)

    @extend_schema(
        summary="The provider's stream: running, worker, last tick, ticks/s, last error (admin)",
        responses={200: StreamStatusSerializer, **error_responses(401, 403, 404)},
    )
    @action(detail=True, methods=["get"], url_path="status")
    def stream_status(self, request: Request, pk: str | None = None) -> Response:
        return self._stream_answer()


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
