"""REST API of when exchanges trade.

``/exchange/{id}/calendar`` (sessions, early closes and holidays of a date
range), ``/exchange/{id}/status`` and ``/marketstatus`` (open, closed, pre or post market now or
at ``?at=``). Every answer comes from ``exchanges.selectors``, the same reads the ingestion uses.
"""

from __future__ import annotations

import datetime
import logging
import zoneinfo
from dataclasses import asdict

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.errors import Conflict
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin

from .holidays_api import exchange_or_404
from .models import Exchange
from .selectors import OutsideCalendarError, exchange_closures, exchange_sessions, exchange_trading_date
from .status import CLOSED, OPEN, POST_MARKET, PRE_MARKET, STATUS_HORIZON_DAYS, exchange_status

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
        exchange = exchange_or_404(exchange_id)
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
        exchange = exchange_or_404(exchange_id)
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
