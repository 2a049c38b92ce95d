"""Writes on instruments, sectors and instrument types: create, update, delete."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from exchanges.models import Exchange

from .models import Instrument, InstrumentType, Sector

# What a caller may set; everything else on the row is bookkeeping.
INSTRUMENT_FIELDS = (
    "symbol",
    "name",
    "exchange",
    "instrument_type",
    "sector",
    "isin",
    "currency",
    "lot_size",
    "tick_size",
    "expiry",
    "strike",
    "option_type",
    "blacklisted",
    "delisted",
    "record_data",
    "is_active",
)


def _duplicate_message(instrument: Instrument) -> str:
    return f"{instrument.exchange.code} already lists the symbol {instrument.symbol!r} (symbols are case-insensitive)."


def _save(instrument: Instrument) -> Instrument:
    """Validate fields and the case-insensitive (exchange, symbol) uniqueness, then save."""
    instrument.symbol = (instrument.symbol or "").strip()
    instrument.currency = (instrument.currency or "").strip().upper()
    instrument.isin = (instrument.isin or "").strip().upper()
    errors: dict[str, list] = {}
    try:
        instrument.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if (
        instrument.symbol
        and instrument.exchange_id
        and Instrument.objects.filter(exchange_id=instrument.exchange_id, symbol__iexact=instrument.symbol)
        .exclude(pk=instrument.pk)
        .exists()
    ):
        errors.setdefault("symbol", []).append(ValidationError(_duplicate_message(instrument), code="unique"))
    if NON_FIELD_ERRORS in errors:
        errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            instrument.save()
    except IntegrityError as exc:
        # (exchange, symbol) is the only unique key; a concurrent insert lands here.
        raise ValidationError({"symbol": [_duplicate_message(instrument)]}) from exc
    return instrument


def instrument_create(
    *,
    symbol: str,
    exchange: Exchange,
    instrument_type: InstrumentType,
    name: str = "",
    sector: Sector | None = None,
    isin: str = "",
    currency: str = "",
    lot_size: int = 1,
    tick_size: Decimal = Decimal("0.01"),
    expiry: datetime.date | None = None,
    strike: Decimal | None = None,
    option_type: str = "",
    blacklisted: bool = False,
    delisted: bool = False,
    record_data: bool = True,
    is_active: bool = True,
) -> Instrument:
    """Create an instrument; a symbol already on the exchange (any case) is a ``ValidationError``."""
    instrument = Instrument(
        symbol=symbol,
        name=name,
        exchange=exchange,
        instrument_type=instrument_type,
        sector=sector,
        isin=isin,
        currency=currency,
        lot_size=lot_size,
        tick_size=tick_size,
        expiry=expiry,
        strike=strike,
        option_type=option_type,
        blacklisted=blacklisted,
        delisted=delisted,
        record_data=record_data,
        is_active=is_active,
    )
    return _save(instrument)


def instrument_update(*, instrument: Instrument, data: dict[str, Any]) -> Instrument:
    """Set the given fields (any of ``INSTRUMENT_FIELDS``) and save after the same validation as create."""
    unknown = set(data) - set(INSTRUMENT_FIELDS)
    if unknown:
        raise ValidationError({name: ["This field cannot be set."] for name in sorted(unknown)})
    for name, value in data.items():
        setattr(instrument, name, value)
    return _save(instrument)


class InstrumentHasHistoryError(Exception):
    """The instrument has stored price history that a delete would destroy."""

    def __init__(self, *, instrument: Instrument, counts: dict[str, int]) -> None:
        self.instrument = instrument
        self.counts = counts
        stored = " and ".join(f"{n} {label}" for label, n in counts.items())
        super().__init__(
            f"Instrument {instrument} has stored price history ({stored} bars). "
            "Repeat the request with ?force=true to deactivate it instead (history is kept)."
        )


# Apps above this one that keep rows a delete would destroy (``marketdata``'s price history)
# register a guard from their ``AppConfig.ready``: ``guard(instrument) -> {label: rows}``.
DeleteGuard = Callable[[Instrument], dict[str, int]]
_delete_guards: list[DeleteGuard] = []


def register_delete_guard(guard: DeleteGuard) -> None:
    if guard not in _delete_guards:
        _delete_guards.append(guard)


def instrument_delete(*, instrument: Instrument, force: bool = False) -> Instrument | None:
    """Delete an instrument without price history; returns ``None`` once deleted.

    With history (as the registered guards count it), raises ``InstrumentHasHistoryError``
    unless ``force``: then the instrument is deactivated and stops streaming (``is_active`` and
    ``record_data`` off), history kept.
    """
    with transaction.atomic():
        locked = Instrument.objects.select_for_update().get(pk=instrument.pk)
        counts: dict[str, int] = {}
        for guard in _delete_guards:
            counts.update(guard(locked))
        if not any(counts.values()):
            locked.delete()
            return None
        if not force:
            raise InstrumentHasHistoryError(instrument=locked, counts=counts)
        locked.is_active = False
        locked.record_data = False
        locked.save(update_fields=["is_active", "record_data", "updated_at"])
        return locked


# --- sectors and instrument types ---------------------------------------------------------------

SECTOR_FIELDS = ("name", "is_active")
INSTRUMENT_TYPE_FIELDS = ("code", "name", "is_active")


class ReferenceInUseError(Exception):
    """A sector or instrument type that instruments still refer to."""

    def __init__(self, message: str, *, instrument_count: int) -> None:
        self.instrument_count = instrument_count
        super().__init__(message)


def _instruments(count: int) -> str:
    return f"{count} instrument" if count == 1 else f"{count} instruments"


def _save_reference(row: Sector | InstrumentType, *, unique_field: str, duplicate: str) -> Sector | InstrumentType:
    """Validate fields and the case-insensitive uniqueness of ``unique_field``, then save."""
    errors: dict[str, list] = {}
    try:
        row.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    value = getattr(row, unique_field)
    model = type(row)
    if value and model.objects.filter(**{f"{unique_field}__iexact": value}).exclude(pk=row.pk).exists():
        errors.setdefault(unique_field, []).append(ValidationError(duplicate, code="unique"))
    if NON_FIELD_ERRORS in errors:
        errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError as exc:
        # The unique column is the only unique key; a concurrent insert lands here.
        raise ValidationError({unique_field: [duplicate]}) from exc
    return row


def _update_fields(row, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = set(data) - set(allowed)
    if unknown:
        raise ValidationError({name: ["This field cannot be set."] for name in sorted(unknown)})
    for name, value in data.items():
        setattr(row, name, value)


def _save_sector(sector: Sector) -> Sector:
    sector.name = (sector.name or "").strip()
    return _save_reference(
        sector,
        unique_field="name",
        duplicate=f"A sector named {sector.name!r} already exists (names are case-insensitive).",
    )


def _save_instrument_type(kind: InstrumentType) -> InstrumentType:
    # Codes are compared upper case everywhere (EQ, INDEX); stray spaces come from forms and CSVs.
    kind.code = (kind.code or "").strip().upper()
    kind.name = (kind.name or "").strip()
    return _save_reference(
        kind,
        unique_field="code",
        duplicate=f"An instrument type with the code {kind.code!r} already exists (codes are case-insensitive).",
    )


def sector_create(*, name: str, is_active: bool = True) -> Sector:
    """Create a sector; a name already taken (any case) is a ``ValidationError`` on ``name``."""
    return _save_sector(Sector(name=name, is_active=is_active))


def sector_update(*, sector: Sector, data: dict[str, Any]) -> Sector:
    """Set the given fields (any of ``SECTOR_FIELDS``) and save after the same validation as create."""
    _update_fields(sector, data, SECTOR_FIELDS)
    return _save_sector(sector)


def sector_delete(*, sector: Sector, force: bool = False) -> int:
    """Delete a sector no instrument uses; returns how many instruments lost it.

    With instruments in it, raises ``ReferenceInUseError`` unless ``force``: then the sector is
    deleted and those instruments are left without a sector (``sector`` null, the foreign key's
    ``SET_NULL``).
    """
    with transaction.atomic():
        # The row lock blocks concurrent instrument writes that point at this sector (they take a
        # key-share lock on it), so the count stays true until the delete commits.
        locked = Sector.objects.select_for_update().get(pk=sector.pk)
        count = locked.instruments.count()
        if count and not force:
            raise ReferenceInUseError(
                f"Sector {locked.name!r} is the sector of {_instruments(count)}. Move them to another sector "
                "first, or repeat the request with ?force=true to delete it and leave them without a sector.",
                instrument_count=count,
            )
        if count:
            locked.instruments.update(sector=None, updated_at=timezone.now())
        locked.delete()
        return count


def instrument_type_create(*, code: str, name: str, is_active: bool = True) -> InstrumentType:
    """Create an instrument type; a code already taken (any case) is a ``ValidationError`` on ``code``."""
    return _save_instrument_type(InstrumentType(code=code, name=name, is_active=is_active))


def instrument_type_update(*, instrument_type: InstrumentType, data: dict[str, Any]) -> InstrumentType:
    """Set the given fields (any of ``INSTRUMENT_TYPE_FIELDS``) and save after the same validation as create."""
    _update_fields(instrument_type, data, INSTRUMENT_TYPE_FIELDS)
    return _save_instrument_type(instrument_type)


def instrument_type_delete(*, instrument_type: InstrumentType, force: bool = False) -> InstrumentType | None:
    """Delete an instrument type no instrument uses; returns ``None`` once deleted.

    Every instrument must have a type (the foreign key PROTECTs it), so a type in use is never
    deleted: without ``force`` that raises ``ReferenceInUseError``; with ``force`` the type is
    deactivated instead (``is_active`` off, kept for its instruments) and returned.
    """
    with transaction.atomic():
        locked = InstrumentType.objects.select_for_update().get(pk=instrument_type.pk)
        count = locked.instruments.count()
        if count == 0:
            locked.delete()
            return None
        if not force:
            raise ReferenceInUseError(
                f"Instrument type {locked.code} is the type of {_instruments(count)}, which need a type: it cannot "
                "be deleted while they exist (move them to another type first). Repeat the request with "
                "?force=true to deactivate it instead.",
                instrument_count=count,
            )
        locked.is_active = False
        locked.save(update_fields=["is_active", "updated_at"])
        return locked
