"""REST API of when exchanges trade.

``/exchange/{id}/holidays[/{holiday_id}]`` (the operator's override rows: everyone signed in
reads, admins write), ``/exchange/{id}/calendar`` (sessions, early closes and holidays of a date
range), ``/exchange/{id}/status`` and ``/marketstatus`` (open, closed, pre or post market now or
at ``?at=``). Every answer comes from ``exchanges.selectors``, the same reads the ingestion uses.
"""

from __future__ import annotations

import datetime
import logging
import zoneinfo
from dataclasses import asdict

from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.errors import Conflict
from core.api.pagination import LimitOffsetPagination
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin

from .models import Exchange, ExchangeHoliday
from .selectors import (
    CLOSED,
    OPEN,
    POST_MARKET,
    PRE_MARKET,
    STATUS_HORIZON_DAYS,
    OutsideCalendarError,
    exchange_closures,
    exchange_holiday_list,
    exchange_sessions,
    exchange_status,
    exchange_trading_date,
)
from .services import exchange_holiday_create, exchange_holiday_delete, exchange_holiday_update

logger = logging.getLogger(__name__)

# The largest date range of one calendar request, both ends included.
CALENDAR_MAX_DAYS = 366
# The default range of a calendar request: from today (exchange-local) for this many days more.
CALENDAR_DEFAULT_DAYS = 30
# Dates and instants the calendar and status reads accept.
FIRST_DATE = datetime.date(1970, 1, 1)
LAST_DATE = datetime.date(2199, 12, 31)

UTC = datetime.UTC


def _in_bounds(value: datetime.date) -> None:
    if not FIRST_DATE <= value <= LAST_DATE:
        raise serializers.ValidationError(f"Must be from {FIRST_DATE} to {LAST_DATE}.")


class UtcDateTimeField(serializers.DateTimeField):
    """An instant, answered in UTC (``2024-12-26T14:30:00Z``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(default_timezone=UTC, **kwargs)


class InstantField(serializers.DateTimeField):
    """An ISO 8601 instant on input; it must carry its offset (``Z`` or ``+05:30``)."""

    def to_internal_value(self, value):
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is not None and parsed.tzinfo is None:
            self.fail("naive")
        result = super().to_internal_value(value)
        _in_bounds(result.date())
        return result

    default_error_messages = {"naive": "Give the offset too, e.g. 2024-12-25T15:00:00Z or 2024-12-25T20:30:00+05:30."}


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


def _exchange(exchange_id: str) -> Exchange:
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
            self._exchange = _exchange(self.kwargs["exchange_id"])
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


# --- sessions and status ----------------------------------------------------------------------------


class SessionSerializer(serializers.Serializer):
    """One trading session; instants in UTC, ``date`` the exchange-local session date."""

    date = serializers.DateField()
    open = UtcDateTimeField(help_text="Regular session open.")
    close = UtcDateTimeField(help_text="Regular session close.")
    pre_market_open = UtcDateTimeField(allow_null=True, help_text="From the exchange's pre_market_open, if set.")
    post_market_close = UtcDateTimeField(allow_null=True, help_text="From the exchange's post_market_close, if set.")
    break_start = UtcDateTimeField(allow_null=True, help_text="Lunch break start (e.g. Tokyo), if any.")
    break_end = UtcDateTimeField(allow_null=True)
    is_early_close = serializers.BooleanField(help_text="Closes before the regular close.")


class HolidaySerializer(serializers.Serializer):
    """A day the exchange would trade but is closed."""

    date = serializers.DateField()
    name = serializers.CharField(
        allow_null=True,
        help_text="The calendar's or the operator's name; null when neither names it (exchange-calendars names "
        "only rule-based holidays).",
    )
    source = serializers.ChoiceField(
        choices=["calendar", "override"],
        help_text="calendar: exchange-calendars; override: an operator's holiday row.",
    )


class CalendarExchangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Exchange
        fields = ["id", "code", "name", "timezone", "calendar_code"]
        read_only_fields = fields


class CalendarSerializer(serializers.Serializer):
    """An exchange's sessions, early closes and holidays from ``start`` to ``end``."""

    exchange = CalendarExchangeSerializer()
    timezone = serializers.CharField(help_text="The exchange's IANA zone; session dates are local to it.")
    start = serializers.DateField()
    end = serializers.DateField()
    sessions = SessionSerializer(many=True)
    early_closes = serializers.ListField(child=serializers.DateField(), help_text="Dates of early-close sessions.")
    holidays = HolidaySerializer(many=True)


class CalendarQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    extra_input_names = ("format",)

    start = serializers.DateField(
        required=False, validators=[_in_bounds], help_text="First exchange-local date (default today)."
    )
    end = serializers.DateField(
        required=False,
        validators=[_in_bounds],
        help_text=f"Last date, included (default start + {CALENDAR_DEFAULT_DAYS} days); "
        f"at most {CALENDAR_MAX_DAYS} days in all.",
    )


@extend_schema_field(OpenApiTypes.DATETIME)
class LocalTimeField(serializers.Field):
    """An aware datetime as ISO 8601 with its own offset (the exchange's wall clock)."""

    def to_representation(self, value: datetime.datetime) -> str:
        return value.isoformat()


class MarketStatusSerializer(serializers.Serializer):
    """Where one exchange stands at ``at``."""

    exchange = CalendarExchangeSerializer()
    status = serializers.ChoiceField(
        choices=[OPEN, CLOSED, PRE_MARKET, POST_MARKET],
        help_text="open: in the regular session (exactly when the ingestion counts it open); pre_market / "
        "post_market: inside the exchange's pre/post-market hours; closed: otherwise, lunch breaks included.",
    )
    at = UtcDateTimeField(help_text="The instant described (now unless ?at= was given).")
    local_time = LocalTimeField(help_text="`at` on the exchange's wall clock, with its offset.")
    timezone = serializers.CharField(help_text="The exchange's IANA zone.")
    trading_date = serializers.DateField(help_text="The exchange-local date of `at`.")
    session = SessionSerializer(
        allow_null=True,
        help_text="The session whose hours (pre/post market included) hold `at`, else the local date's, else null.",
    )
    next_open = UtcDateTimeField(
        allow_null=True,
        help_text=f"Next regular open after `at` (a break's end counts); null if none within {STATUS_HORIZON_DAYS} "
        "days or open around the clock.",
    )
    next_close = UtcDateTimeField(
        allow_null=True,
        help_text="Next regular close after `at` (a break's start counts); null when not known within "
        f"{STATUS_HORIZON_DAYS} days.",
    )
    holiday = HolidaySerializer(allow_null=True, help_text="The local date's holiday when closed for one.")


class UnavailableStatusSerializer(serializers.Serializer):
    """An active exchange whose status cannot be worked out (its hours contradict each other)."""

    id = serializers.IntegerField()
    code = serializers.CharField()
    detail = serializers.CharField()


class MarketStatusListSerializer(serializers.Serializer):
    at = UtcDateTimeField(help_text="The instant described (now unless ?at= was given).")
    results = MarketStatusSerializer(many=True, help_text="Every active exchange, by code.")
    unavailable = UnavailableStatusSerializer(many=True)


class StatusQuerySerializer(StrictFieldsMixin, serializers.Serializer):
    extra_input_names = ("format",)

    at = InstantField(required=False, help_text="ISO 8601 instant with offset; default now.")


AT_PARAMETER = OpenApiParameter(
    "at",
    OpenApiTypes.DATETIME,
    description="Describe this instant instead of now: ISO 8601 with its offset (2024-12-25T15:00:00Z).",
)


def _status_of(exchange: Exchange, at: datetime.datetime) -> dict:
    """The status of one exchange as ``MarketStatusSerializer`` reads it; ``ValueError`` if it cannot be told."""
    return {"exchange": exchange, "timezone": exchange.timezone, **asdict(exchange_status(exchange=exchange, at=at))}


def _query(serializer_class, request: Request) -> dict:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class ExchangeCalendarApi(APIView):
    """``GET /exchange/{id}/calendar``."""

    @extend_schema(
        operation_id="exchange_calendar",
        summary="An exchange's sessions, early closes and holidays",
        description="Sessions (open/close instants in UTC, with the exchange's zone), early closes and holidays "
        "(with names) from `start` to `end`, exchange-calendars merged with the operator's holiday rows: the "
        f"same sessions the ingestion uses. At most {CALENDAR_MAX_DAYS} days; by default today and the next "
        f"{CALENDAR_DEFAULT_DAYS} days.",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, description="First exchange-local date (default today)."),
            OpenApiParameter(
                "end",
                OpenApiTypes.DATE,
                description=f"Last date, included (default start + {CALENDAR_DEFAULT_DAYS} days).",
            ),
        ],
        responses={200: CalendarSerializer, **error_responses(400, 401, 404, 409)},
    )
    def get(self, request: Request, exchange_id: str) -> Response:
        exchange = _exchange(exchange_id)
        query = _query(CalendarQuerySerializer, request)
        start = query.get("start")
        if start is None:
            start = exchange_trading_date(exchange=exchange, at=timezone.now())
        end = query.get("end")
        if end is None:
            end = min(start + datetime.timedelta(days=CALENDAR_DEFAULT_DAYS), LAST_DATE)
        if end < start:
            raise ValidationError({"end": ["Must not be before start."]})
        if (end - start).days + 1 > CALENDAR_MAX_DAYS:
            raise ValidationError({"end": [f"At most {CALENDAR_MAX_DAYS} days from start to end, both included."]})
        try:
            sessions = exchange_sessions(exchange=exchange, start=start, end=end)
            holidays = exchange_closures(exchange=exchange, start=start, end=end)
        except OutsideCalendarError as exc:
            raise ValidationError({"start": [str(exc)]}) from exc
        except ValueError as exc:
            raise Conflict(f"The calendar of {exchange.code} cannot be worked out: {exc}") from exc
        data = {
            "exchange": exchange,
            "timezone": exchange.timezone,
            "start": start,
            "end": end,
            "sessions": [asdict(session) for session in sessions],
            "early_closes": [session.date for session in sessions if session.is_early_close],
            "holidays": [asdict(holiday) for holiday in holidays],
        }
        return Response(CalendarSerializer(data).data)


class ExchangeStatusApi(APIView):
    """``GET /exchange/{id}/status``."""

    @extend_schema(
        operation_id="exchange_status",
        summary="Whether an exchange is open now",
        description="open / closed / pre_market / post_market, the current session, the next open and close, "
        "today's holiday when closed for one, and the exchange's local time; from the same sessions the "
        "ingestion uses.",
        parameters=[AT_PARAMETER],
        responses={200: MarketStatusSerializer, **error_responses(400, 401, 404, 409)},
    )
    def get(self, request: Request, exchange_id: str) -> Response:
        exchange = _exchange(exchange_id)
        at = _query(StatusQuerySerializer, request).get("at") or timezone.now()
        try:
            data = _status_of(exchange, at)
        except OutsideCalendarError as exc:
            raise ValidationError({"at": [str(exc)]}) from exc
        except ValueError as exc:
            raise Conflict(f"The status of {exchange.code} cannot be worked out: {exc}") from exc
        return Response(MarketStatusSerializer(data).data)


class MarketStatusApi(APIView):
    """``GET /marketstatus``."""

    @extend_schema(
        operation_id="market_status",
        summary="Whether each active exchange is open now",
        description="The status of every active exchange, by code (see `GET /exchange/{id}/status`). An "
        "exchange whose status cannot be worked out is listed under `unavailable` instead.",
        parameters=[AT_PARAMETER],
        responses={200: MarketStatusListSerializer, **error_responses(400, 401)},
    )
    def get(self, request: Request) -> Response:
        at = _query(StatusQuerySerializer, request).get("at") or timezone.now()
        results, unavailable = [], []
        for exchange in Exchange.objects.filter(is_active=True).order_by("code"):
            try:
                results.append(_status_of(exchange, at))
            except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
                logger.warning("market status of %s: %s", exchange.code, exc)
                unavailable.append({"id": exchange.pk, "code": exchange.code, "detail": str(exc)})
        return Response(MarketStatusListSerializer({"at": at, "results": results, "unavailable": unavailable}).data)
