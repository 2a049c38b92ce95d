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
- Keyset pagination: ``limit`` (1..10000, default 1000) and an opaque ``cursor`` (base64 of the
  last row's timestamp) taken from ``next``, a full URL or null. Defaulted dates are pinned in
  ``next`` so every page reads the same window.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import time
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from core.api.schema import error_responses
from instruments.models import Instrument
from marketdata.selectors import (
    INTERVALS,
    STORED_INTERVAL,
    AmbiguousSymbolError,
    InstrumentNotFoundError,
    daily_bars,
    exchange_zone,
    instrument_for_symbol,
    intraday_bars,
    live_minutes,
)

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# "...T09:15:00+05:30" sent without encoding the "+" arrives as "...T09:15:00 05:30".
_LOST_PLUS_RE = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
_EARLIEST = dt.date(1970, 1, 1)
_LATEST = dt.date(2100, 12, 31)


def max_intraday_days() -> int:
    """Longest intraday range, in days (``HISTORY_MAX_INTRADAY_DAYS``, default 60)."""
    return int(getattr(settings, "HISTORY_MAX_INTRADAY_DAYS", 60))


def max_daily_days() -> int:
    """Longest daily range, in days (``HISTORY_MAX_RANGE_DAYS``)."""
    return int(getattr(settings, "HISTORY_MAX_RANGE_DAYS", 3660))


class _BoundError(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_history_bound(data: str) -> dt.date | dt.datetime:
    """A ``start_date``/``end_date`` value; raises ``_BoundError`` with the error's code."""
    text = _LOST_PLUS_RE.sub(r"\1+\2", data.strip())
    if _DATE_RE.match(text):
        parse = dt.date.fromisoformat
    elif _DATETIME_RE.match(text):
        parse = dt.datetime.fromisoformat
    else:
        raise _BoundError("invalid")
    try:
        value = parse(text)
    except ValueError:
        raise _BoundError("impossible") from None
    day = value.date() if isinstance(value, dt.datetime) else value
    if not _EARLIEST <= day <= _LATEST:
        raise _BoundError("out_of_range")
    return value


class HistoryBoundField(serializers.Field):
    """A ``YYYY-MM-DD`` date or an ISO 8601 datetime (naive or with an offset)."""

    default_error_messages = {
        "invalid": "Use a date YYYY-MM-DD or an ISO 8601 time such as 2024-01-15T09:15:00Z; got {input!r}.",
        "impossible": "{input!r} is not a real date or time.",
        "out_of_range": f"Must be between {_EARLIEST} and {_LATEST}.",
    }

    def to_internal_value(self, data: Any) -> dt.date | dt.datetime:
        if not isinstance(data, str):
            self.fail("invalid", input=data)
        try:
            return parse_history_bound(data)
        except _BoundError as exc:
            self.fail(exc.code, input=data)

    def to_representation(self, value: Any) -> str:
        return value.isoformat()


class HistoryQuerySerializer(serializers.Serializer):
    """The query string of both history endpoints."""

    symbol = serializers.CharField(max_length=100)
    exchange = serializers.CharField(max_length=20, required=False, allow_blank=True)
    start_date = HistoryBoundField(required=False)
    end_date = HistoryBoundField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
    cursor = serializers.CharField(max_length=200, required=False, allow_blank=True)


class IntradayQuerySerializer(HistoryQuerySerializer):
    """Adds the bar interval."""

    interval = serializers.ChoiceField(
        choices=list(INTERVALS),
        default="1m",
        error_messages={"invalid_choice": f'"{{input}}" is not a valid interval; use one of: {", ".join(INTERVALS)}.'},
    )


def fast_history_query(params, *, intraday: bool) -> dict[str, Any] | None:
    """The serializer's ``validated_data`` for a plainly well-formed query, or None to ask it.

    Building a DRF serializer deep-copies its fields on every request, which cost more than
    reading the bars. This accepts only what the serializer certainly accepts (printable ASCII,
    lengths in bounds, plain digits for ``limit``) and returns what it would return (values
    stripped, defaults filled); anything else goes to the serializer, which also words errors.
    """
    data: dict[str, Any] = {"limit": DEFAULT_LIMIT}
    if intraday:
        data["interval"] = STORED_INTERVAL
    for name in ("symbol", "exchange", "start_date", "end_date", "limit", "cursor", "interval"):
        raw = params.get(name)
        if raw is None:
            continue
        if not (isinstance(raw, str) and raw.isascii() and raw.isprintable()):
            return None
        if name == "interval":
            if not intraday:
                continue
            if raw not in INTERVALS:
                return None
            data[name] = raw
            continue
        value = raw.strip()
        if name == "symbol":
            if not value or len(value) > 100:
                return None
        elif name == "exchange":
            if len(value) > 20:
                return None
        elif name == "cursor":
            if len(value) > 200:
                return None
        elif name == "limit":
            if not value.isdigit() or len(value) > 6 or not 1 <= int(value) <= MAX_LIMIT:
                return None
            value = int(value)
        else:  # start_date, end_date
            try:
                value = parse_history_bound(raw)
            except _BoundError:
                return None
        data[name] = value
    return data if "symbol" in data else None


def _to_instant(value: dt.date | dt.datetime, *, zone: ZoneInfo, is_end: bool) -> dt.datetime:
    """A UTC instant: a date is its local midnight (the next one for an end); naive means local."""
    if isinstance(value, dt.datetime):
        local = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return local.astimezone(dt.UTC)
    day = value + dt.timedelta(days=1) if is_end else value
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _wall_clock_days(start: dt.datetime, end: dt.datetime, zone: ZoneInfo) -> dt.timedelta:
    """The span on the exchange's wall clock, so a DST change does not make a day 25 hours long."""
    return end.astimezone(zone).replace(tzinfo=None) - start.astimezone(zone).replace(tzinfo=None)


def resolve_range(
    *,
    start: dt.date | dt.datetime | None,
    end: dt.date | dt.datetime | None,
    zone: ZoneInfo,
    default_span: dt.timedelta,
    max_days: int,
    now: dt.datetime,
) -> tuple[dt.datetime, dt.datetime]:
    """The half-open UTC range [start, end) that the query asks for, validated.

    A missing bound is ``default_span`` away from the other one; with neither, the range ends ``now``.
    """
    start_at = _to_instant(start, zone=zone, is_end=False) if start is not None else None
    if end is not None:
        end_at = _to_instant(end, zone=zone, is_end=True)
    elif start_at is None:
        end_at = now
    else:
        # Arithmetic on a zone-aware datetime is wall-clock arithmetic: a DST change keeps midnight.
        end_at = (start_at.astimezone(zone) + default_span).astimezone(dt.UTC)
    if start_at is None:
        start_at = (end_at.astimezone(zone) - default_span).astimezone(dt.UTC)
    if end_at <= start_at:
        raise ValidationError({"end_date": ["Must be after start_date."]})
    if _wall_clock_days(start_at, end_at, zone) > dt.timedelta(days=max_days):
        raise ValidationError(
            {
                "non_field_errors": [
                    f"The range from start_date to end_date is longer than the {max_days} days allowed; "
                    "ask for a shorter range."
                ]
            }
        )
    return start_at, end_at


def encode_cursor(value: dt.date | dt.datetime) -> str:
    """An opaque cursor: base64 (URL-safe, unpadded) of the last row's timestamp."""
    return base64.urlsafe_b64encode(value.isoformat().encode()).decode().rstrip("=")


def decode_cursor(raw: str, *, kind: type[dt.date] | type[dt.datetime]) -> Any:
    """The timestamp inside a cursor; a 400 on anything this API did not produce."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        value = kind.fromisoformat(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError({"cursor": ["Invalid cursor; use the next link of the previous page."]}) from None
    if kind is dt.datetime and value.tzinfo is None:
        raise ValidationError({"cursor": ["Invalid cursor; use the next link of the previous page."]})
    return value


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
        params.insert(
            4,
            OpenApiParameter(
                "interval",
                OpenApiTypes.STR,
                enum=list(INTERVALS),
                default="1m",
                description="Bar size. Coarser bars are built from 1-minute bars, aligned to the session open.",
            ),
        )
    return params


class _UserCache:
    """Users authenticated by JWT, by id, for a few seconds (per process).

    simplejwt reads the whole user row on every request; on the history endpoints that query
    cost as much as reading the bars. Only active users that passed every check are kept;
    saving or deleting a user in this process drops its entry, other processes see the change
    within ``HISTORY_AUTH_CACHE_S`` (default 10; 0 turns the cache off). Read-only objects.
    """

    max_entries = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, user_id: str):
        hit = self._entries.get(user_id)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, user_id: str, user, ttl_s: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[user_id] = (time.monotonic() + ttl_s, user)

    def forget(self, sender=None, instance=None, **_kwargs) -> None:
        if instance is not None:
            self._entries.pop(str(getattr(instance, jwt_settings.USER_ID_FIELD, instance.pk)), None)


_user_cache = _UserCache()
post_save.connect(_user_cache.forget, sender=settings.AUTH_USER_MODEL, dispatch_uid="history-user-cache-save")
post_delete.connect(_user_cache.forget, sender=settings.AUTH_USER_MODEL, dispatch_uid="history-user-cache-delete")


class CachedUserJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication with the user row cached briefly (``_UserCache``)."""

    def get_user(self, validated_token):
        ttl_s = float(getattr(settings, "HISTORY_AUTH_CACHE_S", 10.0))
        user_id = validated_token.get(jwt_settings.USER_ID_CLAIM)
        # Revocation by password change compares the token with the current row: no cache then.
        if ttl_s <= 0 or user_id is None or jwt_settings.CHECK_REVOKE_TOKEN:
            return super().get_user(validated_token)
        key = str(user_id)  # simplejwt writes the claim as a string
        user = _user_cache.get(key)
        if user is None:
            user = super().get_user(validated_token)  # unknown or inactive users raise: never cached
            _user_cache.put(key, user, ttl_s)
        return user


class _HistoryView(APIView):
    """Shared flow: validate, resolve the instrument and range, read one page, render with orjson."""

    authentication_classes = [CachedUserJWTAuthentication, SessionAuthentication]
    renderer_classes = [JSONRenderer]
    query_serializer: type[HistoryQuerySerializer] = HistoryQuerySerializer

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
    """Daily bars of one instrument, by trading date."""

    @extend_schema(
        operation_id="marketdata_daily",
        summary="Daily price history",
        parameters=_parameters(intraday=False),
        responses={
            200: _page_schema(
                "DailyHistoryPage",
                _bar_schema("DailyBar", serializers.DateField(help_text="Trading date, exchange-local.")),
                intervals=["1d"],
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
        # Trading days whose local day overlaps [start, end).
        first = start.astimezone(zone).date()
        last = (end - dt.timedelta(microseconds=1)).astimezone(zone).date()
        after = decode_cursor(data["cursor"], kind=dt.date) if data.get("cursor") else None
        rows = daily_bars(instrument=instrument, start_date=first, end_date=last, after=after, limit=data["limit"] + 1)
        return self._respond(
            request,
            instrument=instrument,
            zone=zone,
            interval="1d",
            rows=rows,
            limit=data["limit"],
            window=(first.isoformat(), last.isoformat()),
        )
