"""Exchanges and their non-calendar holidays."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Upper

from core.models import BaseModel

from .validators import validate_calendar_code, validate_currency, validate_timezone


class Exchange(BaseModel):
    """A trading venue. Session times are exchange-local; instants elsewhere are UTC."""

    name = models.CharField(max_length=120)
    code = models.CharField(max_length=20, unique=True, help_text="Short code, e.g. NSE, NASDAQ.")
    mic = models.CharField("MIC", max_length=4, blank=True, help_text="ISO 10383 market identifier.")
    timezone = models.CharField(max_length=64, validators=[validate_timezone])
    country = models.CharField(max_length=64, blank=True)
    currency = models.CharField(max_length=4, validators=[validate_currency])
    pre_market_open = models.TimeField(null=True, blank=True)
    market_open = models.TimeField(null=True, blank=True)
    market_close = models.TimeField(null=True, blank=True)
    post_market_close = models.TimeField(null=True, blank=True)
    is_open_24_hours = models.BooleanField(default=False)
    calendar_code = models.CharField(
        max_length=16,
        blank=True,
        validators=[validate_calendar_code],
        help_text="exchange-calendars name (XNYS, XBOM, ...); blank uses ExchangeHoliday rows.",
    )

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(Upper("code"), name="exchanges_exchange_code_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.code

    def clean_fields(self, exclude=None) -> None:
        # Normalise before the field validators run, so 'inr' is accepted as INR.
        self.code = (self.code or "").strip().upper()
        self.currency = (self.currency or "").strip().upper()
        super().clean_fields(exclude=exclude)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        super().clean()
        if not self.is_open_24_hours:
            if self.market_open is None or self.market_close is None:
                raise ValidationError("Market open and close times are required unless open 24 hours.")
            if self.market_open >= self.market_close:
                raise ValidationError({"market_close": "Market close must be after market open."})


class ExchangeHoliday(BaseModel):
    """A closed day or special hours, for exchanges without an exchange-calendars calendar."""

    exchange = models.ForeignKey(Exchange, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=120, blank=True)
    is_closed = models.BooleanField(default=True)
    open_time = models.TimeField(null=True, blank=True, help_text="Special hours (exchange-local).")
    close_time = models.TimeField(null=True, blank=True)

    class Meta:
        ordering = ["exchange", "date"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "date"], name="exchanges_holiday_unique_date"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange.code} {self.date} {self.name}".strip()
