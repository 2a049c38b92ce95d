"""REST API of an exchange's holiday rows: ``/exchange/{id}/holidays[/{holiday_id}]``.

The operator's overrides of the exchange's calendar (everyone signed in reads, admins write);
the calendar and status reads (``exchanges.calendar_api``) and the ingestion apply them.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.pagination import LimitOffsetPagination
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin

from .models import Exchange, ExchangeHoliday
from .selectors import (
    exchange_holiday_list,
)
from .services import exchange_holiday_create, exchange_holiday_delete, exchange_holiday_update

# --- holiday rows -----------------------------------------------------------------------------------


class ExchangeHolidayOutputSerializer(serializers.ModelSerializer):
    """An operator's row for one date: a closure or special hours (exchange-local times)."""

    exchange = serializers.IntegerField(source="exchange_id", read_only=True)

    class Meta:
        model = ExchangeHoliday
        fields = [
            "id",
            "exchange",
            "date",
            "name",
            "is_closed",
            "open_time",
            "close_time",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ExchangeHolidayInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to add (POST) or replace (PUT) a holiday row; PATCH sends any subset."""

    date = serializers.DateField(help_text="Exchange-local date; one row per exchange and date.")
    name = serializers.CharField(max_length=120, allow_blank=True, default="", help_text="e.g. Election day.")
    is_closed = serializers.BooleanField(
        default=True,
        help_text="true: closed all day. false: special hours (open_time/close_time, each falling back to the "
        "regular or the calendar's), which also opens a day that would be closed.",
    )
    open_time = serializers.TimeField(
        allow_null=True, default=None, help_text="Exchange-local; only with is_closed false."
    )
    close_time = serializers.TimeField(
        allow_null=True, default=None, help_text="Exchange-local, after open_time; only with is_closed false."
    )
    is_active = serializers.BooleanField(default=True, help_text="An inactive row is kept but not applied.")


class HolidayRangeSerializer(StrictFieldsMixin, serializers.Serializer):
    """Query of the holiday row list."""

    extra_input_names = ("limit", "offset", "format")

    start = serializers.DateField(required=False, help_text="Rows on or after this date.")
    end = serializers.DateField(required=False, help_text="Rows on or before this date.")


def exchange_or_404(exchange_id: str) -> Exchange:
    return get_object_or_404(Exchange, pk=exchange_id)


HOLIDAY_RANGE_PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="Rows on or after this date."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="Rows on or before this date."),
]


@extend_schema_view(
    list=extend_schema(
        summary="List an exchange's holiday rows",
        description="The operator's overrides of the exchange's calendar (active or not), by date.",
        parameters=HOLIDAY_RANGE_PARAMETERS,
        responses={200: ExchangeHolidayOutputSerializer(many=True), **error_responses(400, 401, 404)},
    ),
    retrieve=extend_schema(
        summary="Get a holiday row",
        responses={200: ExchangeHolidayOutputSerializer, **error_responses(401, 404)},
    ),
    create=extend_schema(
        summary="Add a holiday row (admin)",
        description="A closure (`is_closed` true, no times) or special hours. It overrides the exchange's "
        "calendar on its date, for the calendar and status reads and for the ingestion alike.",
        request=ExchangeHolidayInputSerializer,
        responses={201: ExchangeHolidayOutputSerializer, **error_responses(400, 401, 403, 404)},
    ),
    update=extend_schema(
        summary="Replace a holiday row (admin)",
        request=ExchangeHolidayInputSerializer,
        responses={200: ExchangeHolidayOutputSerializer, **error_responses(400, 401, 403, 404)},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a holiday row (admin)",
        request=ExchangeHolidayInputSerializer(partial=True),
        responses={200: ExchangeHolidayOutputSerializer, **error_responses(400, 401, 403, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a holiday row (admin)",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(401, 403, 404)},
    ),
)
class ExchangeHolidayViewSet(viewsets.GenericViewSet):
    """Holiday rows of one exchange: everyone signed in reads, admins write."""

    serializer_class = ExchangeHolidayOutputSerializer
    pagination_class = LimitOffsetPagination
    filter_backends: list = []
    lookup_url_kwarg = "holiday_id"
    lookup_value_regex = "[0-9]+"

    def exchange(self) -> Exchange:
        if not hasattr(self, "_exchange"):
            self._exchange = exchange_or_404(self.kwargs["exchange_id"])
        return self._exchange

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ExchangeHoliday.objects.none()
        return exchange_holiday_list(exchange=self.exchange())

    def list(self, request: Request, exchange_id: str) -> Response:
        query = HolidayRangeSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = exchange_holiday_list(exchange=self.exchange(), **query.validated_data)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ExchangeHolidayOutputSerializer(page, many=True).data)

    def retrieve(self, request: Request, exchange_id: str, holiday_id: str) -> Response:
        return Response(ExchangeHolidayOutputSerializer(self.get_object()).data)

    def create(self, request: Request, exchange_id: str) -> Response:
        exchange = self.exchange()
        serializer = ExchangeHolidayInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        holiday = exchange_holiday_create(exchange=exchange, **serializer.validated_data)
        return Response(ExchangeHolidayOutputSerializer(holiday).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, exchange_id: str, holiday_id: str) -> Response:
        return self._update(request, partial=False)

    def partial_update(self, request: Request, exchange_id: str, holiday_id: str) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        holiday = self.get_object()
        serializer = ExchangeHolidayInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        holiday = exchange_holiday_update(holiday=holiday, data=serializer.validated_data)
        return Response(ExchangeHolidayOutputSerializer(holiday).data)

    def destroy(self, request: Request, exchange_id: str, holiday_id: str) -> Response:
        exchange_holiday_delete(holiday=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
