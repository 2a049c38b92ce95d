"""Price history: 1-minute (and other intraday) bars, and daily bars."""

from __future__ import annotations

from django.db import models

from core.models import BaseModel


class PriceHistoryIntraday(BaseModel):
    """One intraday bar; ``timestamp`` is the bar's open instant in UTC.

    The hottest write path of the platform: only three indexes (the key, the unique
    (instrument, interval, timestamp) that also serves range reads, and time). The audit
    fields and foreign keys carry no index of their own here.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True)
    instrument = models.ForeignKey(
        "instruments.Instrument", on_delete=models.CASCADE, related_name="intraday_bars", db_index=False
    )
    timestamp = models.DateTimeField()
    interval = models.CharField(max_length=8, default="1m")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.BigIntegerField(default=0)
    trade_count = models.IntegerField(null=True, blank=True)
    vwap = models.FloatField(null=True, blank=True)
    previous_close = models.FloatField(null=True, blank=True)
    adj_close = models.FloatField(null=True, blank=True)
    delivery_percentage = models.FloatField(null=True, blank=True)
    # The id of the provider (``ingestion.Provider``) that wrote the bar: a plain id, not a foreign
    # key, since price history knows no feed. ``ingestion`` writes it, shows it in the admin and
    # clears it when a provider is deleted (``ingestion.signals``).
    source_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "intraday bar"
        ordering = ["instrument", "interval", "timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "interval", "timestamp"], name="marketdata_intraday_unique_bar"
            ),
        ]
        # The unique index serves "bars of one instrument in a time range"; this one serves
        # cross-instrument time scans (admin date hierarchy, newest first, retention jobs).
        indexes = [models.Index(fields=["timestamp"], name="marketdata_intraday_ts_idx")]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.interval} {self.timestamp:%Y-%m-%d %H:%M}"


class PriceHistoryDaily(BaseModel):
    """One trading day's bar; ``date`` is the trading date in the exchange's time zone."""

    instrument = models.ForeignKey("instruments.Instrument", on_delete=models.CASCADE, related_name="daily_bars")
    date = models.DateField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.BigIntegerField(default=0)
    adj_close = models.FloatField(null=True, blank=True)
    previous_close = models.FloatField(null=True, blank=True)
    dividend = models.FloatField(null=True, blank=True)
    split = models.FloatField(null=True, blank=True)
    delivery_percentage = models.FloatField(null=True, blank=True)
    source_id = models.BigIntegerField(null=True, blank=True, db_index=True, help_text="Provider id (see intraday).")
    from_rollup = models.BooleanField(default=False, help_text="Built from intraday bars, not provider history.")

    class Meta:
        verbose_name = "daily bar"
        ordering = ["instrument", "date"]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "date"], name="marketdata_daily_unique_bar"),
        ]
        indexes = [models.Index(fields=["date"], name="marketdata_daily_date_idx")]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.date}"
