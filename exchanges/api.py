"""REST API of exchanges: ``/exchange/`` and ``/exchange/{id}``."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
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

from .filters import ExchangeFilter
from .models import Exchange
from .services import ExchangeInUseError, exchange_create, exchange_delete, exchange_update

# The seed service's names of the session hours. Accepted on input and answered on output
# beside today's names until clients have moved; documented as deprecated.
HOUR_ALIASES = {
    "pre_market_open_time": "pre_market_open",
    "market_open_time": "market_open",
    "market_close_time": "market_close",
    "post_market_close_time": "post_market_close",
}


def _alias_help(name: str) -> str:
    return f"Deprecated alias of `{name}` (the seed service's name); answered until clients have moved to `{name}`."


@extend_schema_serializer(deprecate_fields=list(HOUR_ALIASES))
class ExchangeOutputSerializer(serializers.ModelSerializer):
    """An exchange as the API shows it; times are exchange-local (``timezone``)."""

    pre_market_open_time = serializers.TimeField(
        source="pre_market_open", read_only=True, allow_null=True, help_text=_alias_help("pre_market_open")
    )
    market_open_time = serializers.TimeField(
        source="market_open", read_only=True, allow_null=True, help_text=_alias_help("market_open")
    )
    market_close_time = serializers.TimeField(
        source="market_close", read_only=True, allow_null=True, help_text=_alias_help("market_close")
    )
    post_market_close_time = serializers.TimeField(
        source="post_market_close", read_only=True, allow_null=True, help_text=_alias_help("post_market_close")
    )

    class Meta:
        model = Exchange
        fields = [
            "id",
            "name",
            "code",
            "mic",
            "timezone",
            "country",
            "currency",
            "pre_market_open",
            "market_open",
            "market_close",
            "post_market_close",
            "is_open_24_hours",
            "calendar_code",
            "is_active",
            "created_at",
            "updated_at",
            *HOUR_ALIASES,
        ]
        read_only_fields = fields


@extend_schema_serializer(
    deprecate_fields=list(HOUR_ALIASES),
    examples=[
        OpenApiExample(
            "Today's names",
            value={
                "name": "National Stock Exchange of India",
                "code": "NSE",
                "timezone": "Asia/Kolkata",
                "country": "India",
                "currency": "INR",
                "pre_market_open": "09:00:00",
                "market_open": "09:15:00",
                "market_close": "15:30:00",
                "calendar_code": "XBOM",
            },
            request_only=True,
        ),
        OpenApiExample(
            "The seed service's names (deprecated)",
            value={
                "name": "NASDAQ",
                "code": "NASDAQ",
                "timezone": "America/New_York",
                "country": "USA",
                "currency": "USD",
                "market_open_time": "09:30:00",
                "market_close_time": "16:00:00",
            },
            request_only=True,
        ),
    ],
)
class ExchangeInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to create or replace (PUT) an exchange; PATCH sends any subset.

    Shape only: the time zone, currency, hours and code uniqueness are checked by the service.
    Each hour may also be sent under the seed service's name (``market_open_time`` for
    ``market_open``, ...); both names with different times are a 400. Unknown fields are a 400.
    """

    name = serializers.CharField(max_length=120)
    code = serializers.CharField(max_length=20, help_text="Short code, unique regardless of case, e.g. NSE.")
    mic = serializers.CharField(max_length=4, allow_blank=True, default="")
    timezone = serializers.CharField(max_length=64, help_text="IANA time zone, e.g. Asia/Kolkata.")
    country = serializers.CharField(max_length=64, allow_blank=True, default="")
    currency = serializers.CharField(max_length=4, help_text="ISO 4217 code, e.g. INR.")
    pre_market_open = serializers.TimeField(allow_null=True, required=False, help_text="Exchange-local.")
    market_open = serializers.TimeField(
        allow_null=True, required=False, help_text="Exchange-local; required unless open 24 hours."
    )
    market_close = serializers.TimeField(
        allow_null=True, required=False, help_text="Exchange-local, after market_open; required unless open 24 hours."
    )
    post_market_close = serializers.TimeField(allow_null=True, required=False, help_text="Exchange-local.")
    is_open_24_hours = serializers.BooleanField(default=False)
    calendar_code = serializers.CharField(
        max_length=16, allow_blank=True, default="", help_text="exchange-calendars name, e.g. XNYS."
    )
    is_active = serializers.BooleanField(default=True)
    pre_market_open_time = serializers.TimeField(
        allow_null=True, required=False, write_only=True, help_text=_alias_help("pre_market_open")
    )
    market_open_time = serializers.TimeField(
        allow_null=True, required=False, write_only=True, help_text=_alias_help("market_open")
    )
    market_close_time = serializers.TimeField(
        allow_null=True, required=False, write_only=True, help_text=_alias_help("market_close")
    )
    post_market_close_time = serializers.TimeField(
        allow_null=True, required=False, write_only=True, help_text=_alias_help("post_market_close")
    )

    def validate(self, attrs: dict) -> dict:
        errors: dict[str, list[str]] = {}
        for alias, name in HOUR_ALIASES.items():
            if alias not in attrs:
                continue
            value = attrs.pop(alias)
            if name in attrs and attrs[name] != value:
                errors[alias] = [f"Conflicts with {name}: send one of the two names, or the same time in both."]
            else:
                attrs[name] = value
        if errors:
            raise serializers.ValidationError(errors)
        if not self.partial:
            # Create and PUT: an hour sent under neither name is cleared, as before the aliases.
            for name in HOUR_ALIASES.values():
                attrs.setdefault(name, None)
        return attrs


FORCE_PARAMETER = OpenApiParameter(
    "force",
    OpenApiTypes.BOOL,
    description="When the exchange still has instruments, deactivate it (200 with the exchange) instead of "
    "answering 409.",
)


@extend_schema_view(
    list=extend_schema(
        summary="List exchanges",
        responses={200: ExchangeOutputSerializer(many=True), **error_responses(400, 401)},
    ),
    retrieve=extend_schema(
        summary="Get an exchange",
        responses={200: ExchangeOutputSerializer, **error_responses(401, 404)},
    ),
    create=extend_schema(
        summary="Create an exchange (admin)",
        request=ExchangeInputSerializer,
        responses={201: ExchangeOutputSerializer, **error_responses(400, 401, 403)},
    ),
    update=extend_schema(
        summary="Replace an exchange (admin)",
        request=ExchangeInputSerializer,
        responses={200: ExchangeOutputSerializer, **error_responses(400, 401, 403, 404)},
    ),
    partial_update=extend_schema(
        summary="Change some fields of an exchange (admin)",
        request=ExchangeInputSerializer(partial=True),
        responses={200: ExchangeOutputSerializer, **error_responses(400, 401, 403, 404)},
    ),
    destroy=extend_schema(
        summary="Delete an exchange (admin)",
        description="An exchange that still has instruments is not deleted: the answer is 409, unless "
        "`?force=true`, which deactivates it and answers 200 with the exchange.",
        parameters=[FORCE_PARAMETER],
        responses={
            200: OpenApiResponse(ExchangeOutputSerializer, description="Deactivated (force=true, instruments left)."),
            204: OpenApiResponse(description="Deleted."),
            **error_responses(400, 401, 403, 404, 409),
        },
    ),
)
class ExchangeViewSet(viewsets.GenericViewSet):
    """Exchanges: everyone signed in reads, admins write."""

    queryset = Exchange.objects.all()
    serializer_class = ExchangeOutputSerializer
    pagination_class = LimitOffsetPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = ExchangeFilter
    lookup_value_regex = "[0-9]+"

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ExchangeOutputSerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ExchangeOutputSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        serializer = ExchangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        exchange = exchange_create(**serializer.validated_data)
        return Response(ExchangeOutputSerializer(exchange).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=False)

    def partial_update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        exchange = self.get_object()
        serializer = ExchangeInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        exchange = exchange_update(exchange=exchange, data=serializer.validated_data)
        return Response(ExchangeOutputSerializer(exchange).data)

    def destroy(self, request: Request, pk: str) -> Response:
        exchange = self.get_object()
        force = query_flag(request, "force")
        try:
            kept = exchange_delete(exchange=exchange, force=force)
        except ExchangeInUseError as exc:
            raise Conflict(str(exc)) from exc
        if kept is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ExchangeOutputSerializer(kept).data)
