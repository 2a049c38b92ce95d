"""Market data providers and how exchanges and instruments map onto them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from core.fields import EncryptedJSONField
from core.models import BaseModel

from .provider_urls import provider_url_problems

# Default settings per provider kind; a Provider row's settings are merged over these.
DEFAULT_SETTINGS: dict[str, dict] = {
    "yahoo": {
        "feed_url": "wss://streamer.finance.yahoo.com/?version=2",
        "resubscribe_s": 15,
    },
    "dhan": {
        "feed_url": "wss://api-feed.dhan.co",
        "rest_url": "https://api.dhan.co/v2",
        "mode": "quote",
    },
    "simulated": {"tick_interval_ms": 250, "seed": None, "follow_sessions": True},
    "replay": {"path": "", "speed": 1.0, "loop": False},
}


class Provider(BaseModel):
    """A source of quotes: Yahoo, Dhan, the simulator or a CSV replayer."""

    class Kind(models.TextChoices):
        YAHOO = "yahoo", "Yahoo Finance"
        DHAN = "dhan", "Dhan"
        SIMULATED = "simulated", "Simulated"
        REPLAY = "replay", "Replay"

    name = models.CharField(max_length=100)
    code = models.CharField(max_length=16, unique=True, help_text="YF, DHAN, SIM, REPLAY.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    settings = models.JSONField(default=dict, blank=True, help_text="feed_url, rest_url, mode, ...")
    credentials = EncryptedJSONField(blank=True, default=dict, help_text="Encrypted at rest; write-only.")
    rate_limit = models.FloatField(default=5.0, help_text="REST requests per second.")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def credentials_set(self) -> bool:
        """Whether any credential value is stored (the values themselves are never shown)."""
        return any(bool(v) for v in (self.credentials or {}).values())

    def clean(self) -> None:
        """URL settings point only at the kind's own hosts (see ``provider_urls``): credentials follow them."""
        super().clean()
        if isinstance(self.settings, dict) and (problems := provider_url_problems(self.kind, self.settings)):
            raise ValidationError({"settings": problems})

    def effective_settings(self) -> dict:
        """This provider's settings over its kind's defaults."""
        return {**DEFAULT_SETTINGS.get(self.kind, {}), **(self.settings or {})}


class ExchangeProviderMapping(BaseModel):
    """Which providers serve an exchange, primary first then by priority (lower first)."""

    exchange = models.ForeignKey("exchanges.Exchange", on_delete=models.CASCADE, related_name="provider_mappings")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="exchange_mappings")
    is_primary = models.BooleanField(default=False)
    priority = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["exchange", "-is_primary", "priority"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "provider"], name="ingestion_unique_exchange_provider"),
            models.UniqueConstraint(
                fields=["exchange"], condition=models.Q(is_primary=True), name="ingestion_one_primary_per_exchange"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.exchange} via {self.provider}{' (primary)' if self.is_primary else ''}"


class ProviderInstrumentMapping(BaseModel):
    """How a provider names an instrument: Dhan security id + segment, Yahoo symbol, ..."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="instrument_mappings")
    instrument = models.ForeignKey("instruments.Instrument", on_delete=models.CASCADE, related_name="provider_mappings")
    search_code = models.CharField(max_length=64, help_text="e.g. Dhan security id 2885, Yahoo RELIANCE.NS")
    segment = models.CharField(max_length=16, blank=True, help_text="e.g. NSE_EQ (Dhan)")

    class Meta:
        ordering = ["provider", "instrument"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "instrument"], name="ingestion_unique_provider_instrument"),
            models.UniqueConstraint(
                fields=["provider", "segment", "search_code"], name="ingestion_unique_provider_segment_code"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider.code}:{self.segment + '/' if self.segment else ''}{self.search_code}"


class PopulateJob(BaseModel):
    """A database population job queued from the API: reference data, an instrument list or price history."""

    class Kind(models.TextChoices):
        REFERENCE = "reference", "Reference data"
        INSTRUMENTS = "instruments", "Instruments"
        HISTORY = "history", "Price history"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    params = models.JSONField(default=dict, blank=True, help_text="The job's validated arguments.")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, help_text="A one-line summary of the outcome.")
    errors = models.JSONField(default=list, blank=True, help_text="Problems met, e.g. malformed rows.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="populate_jobs"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.state})"
