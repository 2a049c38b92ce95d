"""Receivers that keep the lower apps consistent with the feed side's rows.

Bars keep the id of the provider that wrote them as a plain integer (``marketdata`` knows no
provider), so deleting a provider clears that id here, as the foreign key's SET NULL did.
"""

from __future__ import annotations

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

from .models import Provider


@receiver(pre_delete, sender=Provider, dispatch_uid="ingestion.provider_clears_bar_sources")
def provider_clears_bar_sources(sender, instance: Provider, **kwargs) -> None:
    PriceHistoryIntraday.objects.filter(source_id=instance.pk).update(source_id=None)
    PriceHistoryDaily.objects.filter(source_id=instance.pk).update(source_id=None)
