"""What the price-history side answers to the apps below it."""

from __future__ import annotations

from instruments.models import Instrument

from .models import PriceHistoryDaily, PriceHistoryIntraday


def instrument_history_counts(instrument: Instrument) -> dict[str, int]:
    """Stored intraday and daily bars of ``instrument`` (the instrument delete guard)."""
    return {
        "intraday": PriceHistoryIntraday.objects.filter(instrument=instrument).count(),
        "daily": PriceHistoryDaily.objects.filter(instrument=instrument).count(),
    }
