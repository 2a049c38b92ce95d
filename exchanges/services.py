"""Writes on exchanges (create, update, delete or deactivate when instruments still use it) and on
their holiday rows (the operator's overrides of the calendar)."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from .models import Exchange, ExchangeHoliday
from .selectors import exchange_session

# What a caller may set; everything else on the row is bookkeeping.
EXCHANGE_FIELDS = (
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
)

DUPLICATE_CODE = "An exchange with this code already exists (codes are case-insensitive)."


class ExchangeInUseError(Exception):
    """The exchange still has instruments, so deleting it would orphan them."""

    def __init__(self, *, exchange: Exchange, instrument_count: int) -> None:
        self.exchange = exchange
        self.instrument_count = instrument_count
        noun, pronoun = ("instrument", "it") if instrument_count == 1 else ("instruments", "them")
        super().__init__(
            f"Exchange {exchange.code} still has {instrument_count} {noun}. Delete or move {pronoun} first, "
            "or repeat the request with ?force=true to deactivate the exchange instead."
        )


def _normalize(exchange: Exchange) -> None:
    # Codes and currencies are compared upper case everywhere; stray spaces come from forms and CSVs.
    exchange.code = (exchange.code or "").strip().upper()
    exchange.currency = (exchange.currency or "").strip().upper()
    exchange.mic = (exchange.mic or "").strip().upper()
    exchange.timezone = (exchange.timezone or "").strip()
    exchange.name = (exchange.name or "").strip()


def _validate(exchange: Exchange) -> None:
    """Field validators, ``Exchange.clean()`` and the case-insensitive code check, reported together."""
    errors: dict[str, list] = {}
    try:
        exchange.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if exchange.code and Exchange.objects.filter(code__iexact=exchange.code).exclude(pk=exchange.pk).exists():
        errors.setdefault("code", []).append(ValidationError(DUPLICATE_CODE, code="unique"))
    if NON_FIELD_ERRORS in errors:
        # The API error format names errors that belong to no single field "non_field_errors".
        errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
    if errors:
        raise ValidationError(errors)


def _save(exchange: Exchange) -> Exchange:
    _normalize(exchange)
    _validate(exchange)
    try:
        with transaction.atomic():
            exchange.save()
    except IntegrityError as exc:
        # Only the code is unique; a concurrent insert of the same code lands here.
        raise ValidationError({"code": [DUPLICATE_CODE]}) from exc
    return exchange


def exchange_create(
    *,
    name: str,
    code: str,
    timezone: str,
    currency: str,
    mic: str = "",
    country: str = "",
    pre_market_open: datetime.time | None = None,
    market_open: datetime.time | None = None,
    market_close: datetime.time | None = None,
    post_market_close: datetime.time | None = None,
    is_open_24_hours: bool = False,
    calendar_code: str = "",
    is_active: bool = True,
) -> Exchange:
    """Create an exchange after full validation (time zone, currency, hours, unique code).

    Raises ``django.core.exceptions.ValidationError`` keyed by field.
    """
    exchange = Exchange(
        name=name,
        code=code,
        mic=mic,
        timezone=timezone,
        country=country,
        currency=currency,
        pre_market_open=pre_market_open,
        market_open=market_open,
        market_close=market_close,
        post_market_close=post_market_close,
        is_open_24_hours=is_open_24_hours,
        calendar_code=calendar_code,
        is_active=is_active,
    )
    return _save(exchange)


def exchange_update(*, exchange: Exchange, data: dict[str, Any]) -> Exchange:
    """Set the given fields (any of ``EXCHANGE_FIELDS``) and save after the same validation as create."""
    unknown = set(data) - set(EXCHANGE_FIELDS)
    if unknown:
        raise ValidationError({name: ["This field cannot be set."] for name in sorted(unknown)})
    for name, value in data.items():
        setattr(exchange, name, value)
    return _save(exchange)


def exchange_delete(*, exchange: Exchange, force: bool = False) -> Exchange | None:
    """Delete an exchange that no instrument uses; returns ``None`` once deleted.

    With instruments left, raises ``ExchangeInUseError``, unless ``force``: then the exchange is
    deactivated (kept, ``is_active=False``) and returned, so its instruments and history stay.
    """
    with transaction.atomic():
        # Locking the row blocks concurrent instrument inserts (they take a key-share lock on it),
        # so the count below stays true until the delete commits.
        locked = Exchange.objects.select_for_update().get(pk=exchange.pk)
        count = locked.instruments.count()
        if count == 0:
            locked.delete()
            return None
        if not force:
            raise ExchangeInUseError(exchange=locked, instrument_count=count)
        locked.is_active = False
        locked.save(update_fields=["is_active", "updated_at"])
        return locked


# --- holiday rows -----------------------------------------------------------------------------

HOLIDAY_FIELDS = ("date", "name", "is_closed", "open_time", "close_time", "is_active")

DUPLICATE_HOLIDAY = "This exchange already has a holiday row for this date; change that one instead."


def _validate_holiday(holiday: ExchangeHoliday) -> None:
    errors: dict[str, list] = {}
    try:
        holiday.full_clean(exclude=["exchange"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if holiday.is_closed:
        for name in ("open_time", "close_time"):
            if getattr(holiday, name) is not None:
                errors.setdefault(name, []).append(
                    ValidationError("Only special hours (is_closed false) have times; a closed day has none.")
                )
    elif holiday.open_time is not None and holiday.close_time is not None and holiday.open_time >= holiday.close_time:
        errors.setdefault("close_time", []).append(ValidationError("Must be after open_time."))
    if (
        holiday.date
        and ExchangeHoliday.objects.filter(exchange_id=holiday.exchange_id, date=holiday.date)
        .exclude(pk=holiday.pk)
        .exists()
    ):
        errors.setdefault("date", []).append(ValidationError(DUPLICATE_HOLIDAY, code="unique"))
    if NON_FIELD_ERRORS in errors:
        errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
    if errors:
        raise ValidationError(errors)


def _save_holiday(holiday: ExchangeHoliday) -> ExchangeHoliday:
    holiday.name = (holiday.name or "").strip()
    _validate_holiday(holiday)
    try:
        with transaction.atomic():
            holiday.save()
            if holiday.is_active:
                # The day as the selectors will read it: special hours that fall back to the regular
                # (or the calendar's) open or close must still open before they close.
                exchange_session(exchange=holiday.exchange, date=holiday.date)
    except IntegrityError as exc:
        raise ValidationError({"date": [DUPLICATE_HOLIDAY]}) from exc
    except ValueError as exc:
        field = "date" if holiday.is_closed else "non_field_errors"
        raise ValidationError({field: [str(exc)]}) from exc
    return holiday


def exchange_holiday_create(
    *,
    exchange: Exchange,
    date: datetime.date,
    name: str = "",
    is_closed: bool = True,
    open_time: datetime.time | None = None,
    close_time: datetime.time | None = None,
    is_active: bool = True,
) -> ExchangeHoliday:
    """Add an operator's row for one date of ``exchange``: a closure (``is_closed``) or special hours.

    One row per exchange and date. Special hours must open before they close, the missing one
    taken from the exchange's regular (or its calendar's) hours that day. Raises
    ``django.core.exceptions.ValidationError`` keyed by field.
    """
    holiday = ExchangeHoliday(
        exchange=exchange,
        date=date,
        name=name,
        is_closed=is_closed,
        open_time=open_time,
        close_time=close_time,
        is_active=is_active,
    )
    return _save_holiday(holiday)


def exchange_holiday_update(*, holiday: ExchangeHoliday, data: dict[str, Any]) -> ExchangeHoliday:
    """Set the given fields (any of ``HOLIDAY_FIELDS``) and save after the same validation as create."""
    unknown = set(data) - set(HOLIDAY_FIELDS)
    if unknown:
        raise ValidationError({name: ["This field cannot be set."] for name in sorted(unknown)})
    for name, value in data.items():
        setattr(holiday, name, value)
    return _save_holiday(holiday)


def exchange_holiday_delete(*, holiday: ExchangeHoliday) -> None:
    """Delete an operator's row; the calendar (or the regular hours) apply to that date again."""
    holiday.delete()
