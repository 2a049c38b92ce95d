"""Writes on instruments: create, update, delete."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

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
