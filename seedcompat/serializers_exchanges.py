"""The seed's shapes of exchanges, their holidays and their provider mappings, in and out.

Output is plain dicts (``ExchangeInDb``, ``ExchangeHolidayInDb``, ``ExchangeProviderMappingInDb``);
input is DRF serializers that only check the shape and rename the seed's keys to ours. The
exchange services validate everything else (time zone, currency, hours, unique code, one
holiday row per date).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers

from exchanges.models import Exchange, ExchangeHoliday
from exchanges.selectors import exchange_trading_date
from ingestion.models import ExchangeProviderMapping
from seedcompat.common import seed_time

# The seed's names of the session hours -> ours.
HOUR_KEYS = {
    "pre_market_open_time": "pre_market_open",
    "market_open_time": "market_open",
    "market_close_time": "market_close",
    "post_market_close_time": "post_market_close",
}
# Our field names -> the seed's, for the error messages of the services.
EXCHANGE_ERROR_KEYS = {ours: seed for seed, ours in HOUR_KEYS.items()}
HOLIDAY_ERROR_KEYS = {"name": "description"}


def seed_validation_error(exc: DjangoValidationError, renames: dict[str, str]) -> serializers.ValidationError:
    """A service's ``ValidationError`` as a DRF one, its fields named as the seed names them."""
    if not hasattr(exc, "error_dict"):
        return serializers.ValidationError({"non_field_errors": exc.messages})
    errors: dict[str, list[str]] = {}
    for name, messages in exc.message_dict.items():
        key = "non_field_errors" if name == NON_FIELD_ERRORS else renames.get(name, name)
        errors.setdefault(key, []).extend(messages)
    return serializers.ValidationError(errors)


# --- output ------------------------------------------------------------------------------------


def holiday_data(holiday: ExchangeHoliday) -> dict[str, Any]:
    """ExchangeHolidayInDb."""
    return {
        "id": holiday.pk,
        "exchange_id": holiday.exchange_id,
        "date": holiday.date.isoformat(),
        "description": holiday.name or None,
        "is_closed": holiday.is_closed,
        "open_time": seed_time(holiday.open_time),
        "close_time": seed_time(holiday.close_time),
    }


def exchange_data(exchange: Exchange, holidays: Iterable[ExchangeHoliday] = ()) -> dict[str, Any]:
    """ExchangeInDb; ``holidays`` are the exchange's rows for its current local date."""
    return {
        "id": exchange.pk,
        "name": exchange.name,
        "code": exchange.code,
        "timezone": exchange.timezone or None,
        "country": exchange.country or None,
        "currency": exchange.currency or None,
        **{seed: seed_time(getattr(exchange, ours)) for seed, ours in HOUR_KEYS.items()},
        "current_day_holidays": [holiday_data(row) for row in holidays],
    }


def _local_today(exchange: Exchange, now) -> Any:
    try:
        return exchange_trading_date(exchange=exchange, at=now)
    except ValueError:
        # An exchange with an unknown time zone has no "today"; it shows no holiday.
        return None


def exchanges_data(exchanges: Iterable[Exchange]) -> list[dict[str, Any]]:
    """ExchangeInDb rows with ``current_day_holidays``: each exchange's active holiday rows for
    today in its own time zone (one query for all of them)."""
    exchanges = list(exchanges)
    now = timezone.now()
    today = {exchange.pk: _local_today(exchange, now) for exchange in exchanges}
    rows = ExchangeHoliday.objects.filter(
        exchange_id__in=[pk for pk, day in today.items() if day is not None],
        date__in={day for day in today.values() if day is not None},
        is_active=True,
    ).order_by("id")
    by_exchange: dict[int, list[ExchangeHoliday]] = {}
    for row in rows:
        if today.get(row.exchange_id) == row.date:
            by_exchange.setdefault(row.exchange_id, []).append(row)
    return [exchange_data(exchange, by_exchange.get(exchange.pk, ())) for exchange in exchanges]


def mapping_data(mapping: ExchangeProviderMapping) -> dict[str, Any]:
    """ExchangeProviderMappingInDb."""
    return {
        "provider_id": mapping.provider_id,
        "exchange_id": mapping.exchange_id,
        "is_active": mapping.is_active,
        "is_primary": mapping.is_primary,
    }


# --- input -------------------------------------------------------------------------------------


class SeedTimeField(serializers.TimeField):
    """``HH:MM`` or ``HH:MM:SS``; ``""`` (a cleared ``<input type="time">``) and null mean no time."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        return super().validate_empty_values(None if data == "" else data)


class OptionalTextField(serializers.CharField):
    """A string that may be null or empty (null is stored as an empty string)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)


class ExchangeInputSerializer(serializers.Serializer):
    """The 9 keys of the seed's exchange forms. Unknown keys are ignored, as the seed does."""

    name = serializers.CharField()
    code = serializers.CharField()
    timezone = OptionalTextField()
    country = OptionalTextField()
    currency = OptionalTextField()
    pre_market_open_time = SeedTimeField()
    market_open_time = SeedTimeField()
    market_close_time = SeedTimeField()
    post_market_close_time = SeedTimeField()

    def service_data(self) -> dict[str, Any]:
        """The validated keys under our names; a null text is an empty one."""
        data: dict[str, Any] = {}
        for key, value in self.validated_data.items():
            if key in HOUR_KEYS:
                data[HOUR_KEYS[key]] = value
            else:
                data[key] = "" if value is None else value
        return data


class HolidayInputSerializer(serializers.Serializer):
    """A holiday as the seed's forms send it; ``exchange_id`` only on create."""

    date = serializers.DateField()
    description = OptionalTextField()
    is_closed = serializers.BooleanField(required=False)
    open_time = SeedTimeField()
    close_time = SeedTimeField()

    def service_data(self, *, is_closed_now: bool = True) -> dict[str, Any]:
        """Our names. A closed day has no times: the seed's form hides them when "closed" is
        ticked but still sends what was typed before, so they are dropped."""
        data = dict(self.validated_data)
        data.pop("exchange_id", None)
        if "description" in data:
            data["name"] = data.pop("description") or ""
        if data.get("is_closed", is_closed_now):
            data["open_time"] = None
            data["close_time"] = None
        return data


class HolidayCreateSerializer(HolidayInputSerializer):
    exchange_id = serializers.IntegerField()


class MappingCreateSerializer(serializers.Serializer):
    """The seed's ``ExchangeProviderMappingCreate``; the ids must agree with the path."""

    provider_id = serializers.IntegerField(required=False)
    exchange_id = serializers.IntegerField(required=False)
    is_active = serializers.BooleanField(default=True)
    is_primary = serializers.BooleanField(default=False)


class MappingUpdateSerializer(serializers.Serializer):
    is_active = serializers.BooleanField(required=False)
    is_primary = serializers.BooleanField(required=False)
