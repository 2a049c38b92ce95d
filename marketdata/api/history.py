"""Price history endpoints: ``GET /marketdata/intraday`` and ``GET /marketdata/daily``.

The hot read path: the views validate the query, call the selectors and serialize the rows
with orjson in one go (no per-row serializer). DRF still does authentication, permissions and
the OpenAPI schema; errors use the project's error format.

Query semantics (also in the OpenAPI descriptions):

- ``symbol`` is ``AAPL`` or ``NASDAQ:AAPL``; ``exchange`` is an exchange code. A symbol listed
  on several exchanges without an exchange is a 400 naming them; unknown symbol/exchange 404.
- ``start_date`` / ``end_date`` are exchange-local dates ``YYYY-MM-DD`` (the end date is
  included: the range is [start 00:00, end + 1 day 00:00) in the exchange's time zone) or ISO
  8601 instants (``2024-01-15T09:15:00Z``, ``...+05:30``; an instant without an offset is
  exchange-local; an end instant is excluded). A ``+`` sent unencoded arrives as a space and
  is read back as ``+``.
- Defaults: the span is one day (intraday) or 365 days (daily), on the exchange's wall clock.
  Neither date given: the span ending now. Only ``start_date``: the span from it. Only
  ``end_date``: the span before it.
- Ranges longer than ``HISTORY_MAX_INTRADAY_DAYS`` (default 60) for intraday or
  ``HISTORY_MAX_RANGE_DAYS`` for daily are refused with a 400 before any query runs.
- Daily bars carry the trading date (``"2024-01-15"``) under ``timestamp``; intraday bars the
  bar's open instant in UTC (``"2024-01-15T03:45:00Z"``).
- Daily ``interval``: ``1d`` (default, the stored trading days), ``1w`` (ISO weeks, Monday
  start) or ``1mo`` (calendar months), of the exchange-local trading dates. A period's
  ``timestamp`` is its start date (the Monday, the 1st), traded or not; the range is widened
  to whole periods. Anything else is a 400 naming the allowed values.
- Keyset pagination: ``limit`` (1..10000, default 1000) and an opaque ``cursor`` (base64 of the
  last row's timestamp) taken from ``next``, a full URL or null. Defaulted dates are pinned in
  ``next`` so every page reads the same window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from accounts.authentication import ApprovedSessionAuthentication
from core.api.schema import error_responses
from instruments.models import Instrument
from marketdata.api.auth import CachedUserJWTAuthentication
from marketdata.api.history_query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    DailyQuerySerializer,
    HistoryQuerySerializer,
    IntradayQuerySerializer,
    decode_cursor,
    encode_cursor,
    fast_history_query,
    max_daily_days,
    max_intraday_days,
    resolve_range,
)
from marketdata.selectors import (
    DAILY_INTERVAL,
    DAILY_INTERVALS,
    INTERVALS,
    AmbiguousSymbolError,
    InstrumentNotFoundError,
    daily_bars,
    exchange_zone,
    instrument_for_symbol,
    intraday_bars,
    live_minutes,
    period_end,
    period_start,
)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _bar_schema(name: str, timestamp: serializers.Field) -> serializers.Serializer:
    return inline_serializer(
        name=name,
        fields={
            "timestamp": timestamp,
            "open": serializers.FloatField(),
            "high": serializers.FloatField(),
            "low": serializers.FloatField(),
            "close": serializers.FloatField(),
            "volume": serializers.IntegerField(),
            "previous_close": serializers.FloatField(allow_null=True),
            "adj_close": serializers.FloatField(allow_null=True),
            "delivery_percentage": serializers.FloatField(allow_null=True),
        },
    )


def _page_schema(name: str, bar: serializers.Serializer, *, intervals: list[str]) -> serializers.Serializer:
    return inline_serializer(
        name=name,
        fields={
            "symbol": serializers.CharField(),
            "exchange": serializers.CharField(help_text="Exchange code."),
            "interval": serializers.ChoiceField(choices=intervals),
            "timezone": serializers.CharField(help_text="The exchange's IANA time zone, used for dates."),
            "results": serializers.ListField(child=bar),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last one."),
        },
    )


def _parameters(*, intraday: bool) -> list[OpenApiParameter]:
    span, cap = ("1 day", "HISTORY_MAX_INTRADAY_DAYS (60)") if intraday else ("365 days", "HISTORY_MAX_RANGE_DAYS")
    params = [
        OpenApiParameter(
            "symbol", OpenApiTypes.STR, required=True, description="Symbol, e.g. `AAPL`, or `EXCHANGE:SYMBOL`."
        ),
        OpenApiParameter(
            "exchange", OpenApiTypes.STR, description="Exchange code; needed when the symbol is on several."
        ),
        OpenApiParameter(
            "start_date",
            OpenApiTypes.STR,
            description=(
                "Exchange-local date `YYYY-MM-DD` (from its midnight) or ISO 8601 time (`Z`/offset; none = "
                f"exchange-local). Default: {span} before end_date."
            ),
        ),
        OpenApiParameter(
            "end_date",
            OpenApiTypes.STR,
            description=(
                "Exchange-local date `YYYY-MM-DD` (included) or ISO 8601 time (excluded). Default: "
                f"{span} after start_date, or now when start_date is missing too. "
                f"The range may be at most {cap} days."
            ),
        ),
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            description="Rows per page.",
        ),
        OpenApiParameter("cursor", OpenApiTypes.STR, description="Opaque; taken from `next`."),
    ]
    if intraday:
        interval = OpenApiParameter(
            "interval",
            OpenApiTypes.STR,
            enum=list(INTERVALS),
            default="1m",
            description="Bar size. Coarser bars are built from 1-minute bars, aligned to the session open.",
        )
    else:
        interval = OpenApiParameter(
            "interval",
            OpenApiTypes.STR,
            enum=list(DAILY_INTERVALS),
            default=DAILY_INTERVAL,
            description=(
                "Bar period: `1d` trading days, `1w` ISO weeks (Monday start), `1mo` calendar months, of the "
                "exchange-local trading dates. A week's or month's `timestamp` is its start date (the Monday, "
                "the 1st), whether or not the exchange traded that day, and the date range is widened to whole "
                "periods. Open is the first day's open, close the last day's close, high/low the extremes, volume "
                "the sum. Any other value is a 400."
            ),
        )
    params.insert(4, interval)
    return params


class _HistoryView(APIView):
    """Shared flow: validate, resolve the instrument and range, read one page, render with orjson."""

    authentication_classes = [CachedUserJWTAuthentication, ApprovedSessionAuthentication]
    renderer_classes = [JSONRenderer]
    query_serializer: type[HistoryQuerySerializer] = DailyQuerySerializer

    def _query(self, request) -> tuple[dict[str, Any], Instrument, ZoneInfo]:
        data = fast_history_query(request.query_params, intraday=self.query_serializer is IntradayQuerySerializer)
        if data is None:
            query = self.query_serializer(data=request.query_params)
            query.is_valid(raise_exception=True)
            data = query.validated_data
        try:
            instrument = instrument_for_symbol(symbol=data["symbol"], exchange=data.get("exchange"))
        except AmbiguousSymbolError as exc:
            raise ValidationError({"symbol": [str(exc)]}) from None
        except InstrumentNotFoundError as exc:
            raise NotFound(str(exc)) from None
        return data, instrument, exchange_zone(instrument.exchange)

    def _respond(
        self, request, *, instrument: Instrument, zone: ZoneInfo, interval: str, rows: list, limit: int, window: tuple
    ) -> HttpResponse:
        """One page; ``rows`` holds up to ``limit + 1`` rows, the extra one only says there is more."""
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            params = request.query_params.copy()
            params["cursor"] = encode_cursor(rows[-1]["timestamp"])
            # Pin defaulted bounds, so later pages read the window of the first one even as "now" moves.
            for name, value in zip(("start_date", "end_date"), window, strict=True):
                if not params.get(name):
                    params[name] = value
            next_url = request.build_absolute_uri(request.path) + "?" + params.urlencode()
        body = {
            "symbol": instrument.symbol,
            "exchange": instrument.exchange.code,
            "interval": interval,
            "timezone": zone.key,
            "results": rows,
            "next": next_url,
        }
        return HttpResponse(orjson.dumps(body, option=orjson.OPT_UTC_Z), content_type="application/json")


class IntradayHistoryApi(_HistoryView):
    """Intraday bars (1m stored; 5m, 15m, 30m, 1h derived) of one instrument."""

    query_serializer = IntradayQuerySerializer

    @extend_schema(
        operation_id="marketdata_intraday",
        summary="Intraday price history",
        parameters=_parameters(intraday=True),
        responses={
            200: _page_schema(
                "IntradayHistoryPage",
                _bar_schema("IntradayBar", serializers.DateTimeField(help_text="Bar open, UTC.")),
                intervals=list(INTERVALS),
            ),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request) -> HttpResponse:
        data, instrument, zone = self._query(request)
        start, end = resolve_range(
            start=data.get("start_date"),
            end=data.get("end_date"),
            zone=zone,
            default_span=dt.timedelta(days=1),
            max_days=max_intraday_days(),
            now=timezone.now(),
        )
        after = decode_cursor(data["cursor"], kind=dt.datetime) if data.get("cursor") else None
        rows = intraday_bars(
            instrument=instrument,
            start=start,
            end=end,
            interval=data["interval"],
            after=after,
            limit=data["limit"] + 1,
            live_bars=live_minutes(instrument_id=instrument.pk, start=start, end=end),
        )
        return self._respond(
            request,
            instrument=instrument,
            zone=zone,
            interval=data["interval"],
            rows=rows,
            limit=data["limit"],
            window=(_iso(start), _iso(end)),
        )


class DailyHistoryApi(_HistoryView):
    """Daily bars of one instrument, by trading date, or weeks and months of them."""

    @extend_schema(
        operation_id="marketdata_daily",
        summary="Daily price history",
        parameters=_parameters(intraday=False),
        responses={
            200: _page_schema(
                "DailyHistoryPage",
                _bar_schema(
                    "DailyBar",
                    serializers.DateField(
                        help_text="Trading date (1d) or the period's start date (1w, 1mo), exchange-local."
                    ),
                ),
                intervals=list(DAILY_INTERVALS),
            ),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request) -> HttpResponse:
        data, instrument, zone = self._query(request)
        start, end = resolve_range(
            start=data.get("start_date"),
            end=data.get("end_date"),
            zone=zone,
            default_span=dt.timedelta(days=365),
            max_days=max_daily_days(),
            now=timezone.now(),
        )
        interval = data["interval"]
        # Trading days whose local day overlaps [start, end), widened to whole weeks or months.
        first = period_start(start.astimezone(zone).date(), interval)
        last = period_end((end - dt.timedelta(microseconds=1)).astimezone(zone).date(), interval)
        after = decode_cursor(data["cursor"], kind=dt.date) if data.get("cursor") else None
        rows = daily_bars(
            instrument=instrument,
            start_date=first,
            end_date=last,
            after=after,
            limit=data["limit"] + 1,
            interval=interval,
        )
        return self._respond(
            request,
            instrument=instrument,
            zone=zone,
            interval=interval,
            rows=rows,
            limit=data["limit"],
            window=(first.isoformat(), last.isoformat()),
        )
