"""REST API of instruments: ``/instruments/`` and ``/instruments/{id}``."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import Conflict
from core.api.pagination import LimitOffsetPagination
from core.api.params import query_flag
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin
from exchanges.models import Exchange

from .filters import MAX_ID
from .models import Instrument, InstrumentType, Sector
from .selectors import instrument_list
from .services import InstrumentHasHistoryError, instrument_create, instrument_delete, instrument_update


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class IdOrCodeRelatedField(serializers.RelatedField):
    """A related row named by its id (``3``, ``"3"``) or by a code/name field, any case (``"NSE"``)."""

    default_error_messages = {
        "invalid": "Expected an id or a {slug_field}.",
        "does_not_exist": "No {model} with id or {slug_field} {value!r}.",
    }

    def __init__(self, *, slug_field: str, **kwargs) -> None:
        self.slug_field = slug_field
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        queryset = self.get_queryset()
        model = queryset.model._meta.verbose_name
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid", slug_field=self.slug_field)
        value = data.strip() if isinstance(data, str) else data
        if isinstance(value, str) and "\x00" in value:
            self.fail("invalid", slug_field=self.slug_field)
        if isinstance(value, int) or value.isdigit():
            number = int(value)
            found = queryset.filter(pk=number).first() if 0 < number <= MAX_ID else None
        else:
            found = queryset.filter(**{f"{self.slug_field}__iexact": value}).first() if value else None
        if found is None:
            self.fail("does_not_exist", model=model, slug_field=self.slug_field, value=data)
        return found

    def to_representation(self, value):
        return value.pk


class ExchangeSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Exchange
        fields = ["id", "code", "name", "timezone"]


class SectorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Sector
        fields = ["id", "name"]


class InstrumentTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = InstrumentType
        fields = ["id", "code", "name"]


class InstrumentProviderMappingSerializer(serializers.Serializer):
    """How one provider names this instrument."""

    id = serializers.IntegerField()
    provider = serializers.CharField(source="provider.code", help_text="Provider code.")
    provider_name = serializers.CharField(source="provider.name")
    search_code = serializers.CharField()
    segment = serializers.CharField()
    is_active = serializers.BooleanField()


class InstrumentOutputSerializer(serializers.ModelSerializer):
    """An instrument with its exchange, type, sector and provider mappings inline."""

    exchange = ExchangeSummarySerializer()
    instrument_type = InstrumentTypeSerializer()
    sector = SectorSerializer(allow_null=True)
    option_type = serializers.ChoiceField(
        choices=[*Instrument.OptionType.choices, ("", "None")], read_only=True, help_text="CE, PE or empty."
    )
    effective_currency = serializers.CharField(help_text="The instrument's currency, else its exchange's.")
    provider_mappings = InstrumentProviderMappingSerializer(many=True)

    class Meta:
        model = Instrument
        fields = [
            "id",
            "symbol",
            "name",
            "exchange",
            "instrument_type",
            "sector",
            "isin",
            "currency",
            "effective_currency",
            "lot_size",
            "tick_size",
            "expiry",
            "strike",
            "option_type",
            "blacklisted",
            "delisted",
            "record_data",
            "is_active",
            "provider_mappings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class InstrumentInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to create or replace (PUT) an instrument; PATCH sends any subset."""

    symbol = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=255, allow_blank=True, default="")
    exchange = IdOrCodeRelatedField(slug_field="code", queryset=Exchange.objects.all(), help_text="Id or code.")
    instrument_type = IdOrCodeRelatedField(
        slug_field="code", queryset=InstrumentType.objects.all(), help_text="Id or code (EQ, INDEX, ...)."
    )
    sector = IdOrCodeRelatedField(
        slug_field="name", queryset=Sector.objects.all(), allow_null=True, default=None, help_text="Id or name."
    )
    isin = serializers.CharField(max_length=12, allow_blank=True, default="")
    currency = serializers.CharField(
        max_length=4, allow_blank=True, default="", help_text="ISO 4217; blank uses the exchange's."
    )
    lot_size = serializers.IntegerField(min_value=1, max_value=2_147_483_647, default=1)
    tick_size = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=Decimal("0.000001"), default=Decimal("0.01")
    )
    expiry = serializers.DateField(allow_null=True, default=None)
    strike = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True, default=None)
    option_type = serializers.ChoiceField(choices=Instrument.OptionType.choices, allow_blank=True, default="")
    blacklisted = serializers.BooleanField(default=False)
    delisted = serializers.BooleanField(default=False)
    record_data = serializers.BooleanField(default=True, help_text="Stream this instrument live.")
    is_active = serializers.BooleanField(default=True)


LIST_PARAMETERS = [
    OpenApiParameter("exchange_id", OpenApiTypes.INT, description="Exchange id."),
    OpenApiParameter("exchange", OpenApiTypes.STR, description="Exchange code, any case (NSE)."),
    OpenApiParameter("symbol", OpenApiTypes.STR, description="Exact symbol, any case."),
    OpenApiParameter(
        "search",
        OpenApiTypes.STR,
        description="Text anywhere in the symbol, name or ISIN, any case (at most 255 characters). Results come "
        "ranked: the exact symbol, then symbols starting with it, names starting with it, then the rest.",
    ),
    OpenApiParameter("sector", OpenApiTypes.STR, description="Sector id or name."),
    OpenApiParameter("instrument_type", OpenApiTypes.STR, description="Instrument type id or code (EQ, INDEX)."),
    OpenApiParameter("is_active", OpenApiTypes.BOOL, description="true or false."),
]


@extend_schema_view(
    list=extend_schema(
        summary="List instruments",
        description="Filters combine with AND. `limit` defaults to 100 and may be at most 1000; larger values, "
        "a negative `offset` and malformed filter values answer 400.",
        parameters=LIST_PARAMETERS,
        responses={200: InstrumentOutputSerializer(many=True), **error_responses(400, 401)},
    ),
    retrieve=extend_schema(
        summary="Get an instrument",
        responses={200: InstrumentOutputSerializer, **error_responses(401, 404)},
    ),
    create=extend_schema(
        summary="Create an instrument (admin)",
        request=InstrumentInputSerializer,
        responses={201: InstrumentOutputSerializer, **error_responses(400, 401, 403)},
    ),
    update=extend_schema(
        summary="Replace an instrument (admin)",
        request=InstrumentInputSerializer,
        responses={200: InstrumentOutputSerializer, **error_responses(400, 401, 403, 404)},
    ),
    partial_update=extend_schema(
        summary="Change some fields of an instrument (admin)",
        request=InstrumentInputSerializer(partial=True),
        responses={200: InstrumentOutputSerializer, **error_responses(400, 401, 403, 404)},
    ),
    destroy=extend_schema(
        summary="Delete an instrument (admin)",
        description="An instrument with stored price history is not deleted: the answer is 409, unless "
        "`?force=true`, which deactivates it (history kept, streaming stopped) and answers 200.",
        parameters=[
            OpenApiParameter("force", OpenApiTypes.BOOL, description="Deactivate instead of failing with 409.")
        ],
        responses={
            200: OpenApiResponse(InstrumentOutputSerializer, description="Deactivated (force=true, history kept)."),
            204: OpenApiResponse(description="Deleted."),
            **error_responses(400, 401, 403, 404, 409),
        },
    ),
)
class InstrumentViewSet(viewsets.GenericViewSet):
    """Instruments: everyone signed in reads, admins write."""

    serializer_class = InstrumentOutputSerializer
    pagination_class = LimitOffsetPagination
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return instrument_list()

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(instrument_list(filters=request.query_params))
        return self.get_paginated_response(InstrumentOutputSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(InstrumentOutputSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        serializer = InstrumentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instrument = instrument_create(**serializer.validated_data)
        return Response(InstrumentOutputSerializer(self._reload(instrument)).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=False)

    def partial_update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        instrument = self.get_object()
        serializer = InstrumentInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        instrument = instrument_update(instrument=instrument, data=serializer.validated_data)
        return Response(InstrumentOutputSerializer(self._reload(instrument)).data)

    def destroy(self, request: Request, pk: str) -> Response:
        instrument = self.get_object()
        try:
            kept = instrument_delete(instrument=instrument, force=query_flag(request, "force"))
        except InstrumentHasHistoryError as exc:
            raise Conflict(str(exc)) from exc
        if kept is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(InstrumentOutputSerializer(self._reload(kept)).data)

    @staticmethod
    def _reload(instrument: Instrument) -> Instrument:
        # Read back through the selector so the answer has the same shape (and prefetches) as a GET.
        return instrument_list().get(pk=instrument.pk)
