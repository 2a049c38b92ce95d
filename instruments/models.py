"""Sectors, instrument types and the instruments themselves."""

from __future__ import annotations

from django.db import models

from core.models import BaseModel
from exchanges.validators import validate_currency


class Sector(BaseModel):
    """An industry sector (Energy, Financials, ...)."""

    name = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InstrumentType(BaseModel):
    """A kind of instrument: EQ, INDEX, ETF, FUT, OPT, CURR, CRYPTO, COMM, BOND, ..."""

    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Instrument(BaseModel):
    """Something with a price on one exchange; unique by (exchange, symbol)."""

    class OptionType(models.TextChoices):
        CALL = "CE", "Call"
        PUT = "PE", "Put"

    symbol = models.CharField(max_length=64)
    name = models.CharField(max_length=255, blank=True)
    exchange = models.ForeignKey("exchanges.Exchange", on_delete=models.PROTECT, related_name="instruments")
    instrument_type = models.ForeignKey(InstrumentType, on_delete=models.PROTECT, related_name="instruments")
    sector = models.ForeignKey(Sector, on_delete=models.SET_NULL, null=True, blank=True, related_name="instruments")
    isin = models.CharField("ISIN", max_length=12, blank=True, db_index=True)
    currency = models.CharField(max_length=4, blank=True, validators=[validate_currency])
    lot_size = models.PositiveIntegerField(default=1)
    tick_size = models.DecimalField(max_digits=12, decimal_places=6, default="0.01")
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    option_type = models.CharField(max_length=2, choices=OptionType.choices, blank=True)
    blacklisted = models.BooleanField(default=False)
    delisted = models.BooleanField(default=False)
    record_data = models.BooleanField(default=True, help_text="Stream this instrument live.")

    class Meta:
        ordering = ["exchange__code", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="instruments_unique_exchange_symbol"),
        ]
        indexes = [models.Index(fields=["symbol"], name="instruments_symbol_idx")]

    def __str__(self) -> str:
        return f"{self.exchange.code}:{self.symbol}" if self.exchange_id else self.symbol

    @property
    def effective_currency(self) -> str:
        """The instrument's own currency, else its exchange's."""
        return self.currency or self.exchange.currency
