"""The history endpoints' query: parsing, validation, the serializer-free fast path, range and cursor.

``fast_history_query`` accepts the plainly well-formed queries without building a DRF
serializer (which costs more than reading the bars); anything else goes to the serializers,
which also word the errors. ``resolve_range`` turns the dates into a validated half-open UTC
range; ``encode_cursor`` / ``decode_cursor`` make and read the keyset pagination cursors.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from marketdata.selectors import DAILY_INTERVAL, DAILY_INTERVALS, INTERVALS, STORED_INTERVAL

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
    """What the query strings of both history endpoints share."""

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


class DailyQuerySerializer(HistoryQuerySerializer):
    """Adds the period: trading days, ISO weeks or calendar months."""

    interval = serializers.ChoiceField(
        choices=list(DAILY_INTERVALS),
        default=DAILY_INTERVAL,
        error_messages={
            "invalid_choice": f'"{{input}}" is not a valid interval; use one of: {", ".join(DAILY_INTERVALS)}.'
        },
    )


def fast_history_query(params, *, intraday: bool) -> dict[str, Any] | None:
    """The serializer's ``validated_data`` for a plainly well-formed query, or None to ask it.

    Building a DRF serializer deep-copies its fields on every request, which cost more than
    reading the bars. This accepts only what the serializer certainly accepts (printable ASCII,
    lengths in bounds, plain digits for ``limit``) and returns what it would return (values
    stripped, defaults filled); anything else goes to the serializer, which also words errors.
    """
    intervals = INTERVALS if intraday else DAILY_INTERVALS
    data: dict[str, Any] = {"limit": DEFAULT_LIMIT, "interval": STORED_INTERVAL if intraday else DAILY_INTERVAL}
    for name in ("symbol", "exchange", "start_date", "end_date", "limit", "cursor", "interval"):
        raw = params.get(name)
        if raw is None:
            continue
        if not (isinstance(raw, str) and raw.isascii() and raw.isprintable()):
            return None
        if name == "interval":
            if raw not in intervals:
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
