"""Idempotent writes of provider history: unique keys and upserts, so a re-run never duplicates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import transaction

from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

from .base import DailyBar, IntradayBar

# A provider's bar replaces what the live feed recorded for the same minute (it saw every
# trade); the trade count only the live feed knows, so it is left alone.
INTRADAY_UPDATE_FIELDS = ["open", "high", "low", "close", "volume", "source_id", "updated_at"]
DAILY_UPDATE_FIELDS = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "adj_close",
    "previous_close",
    "dividend",
    "split",
    "source_id",
    "from_rollup",
    "updated_at",
]


def intraday_history_upsert(
    *, instrument_id: int, provider_id: int, bars: Iterable[IntradayBar], only_missing: bool = False
) -> int:
    """Write 1-minute bars of one instrument; returns how many were sent to the database.

    ``only_missing`` inserts bars for minutes with no row yet and leaves stored minutes as they
    are (gap repair must not rewrite what the live feed recorded).
    """
    now = datetime.now(UTC)
    latest = {bar.ts: bar for bar in bars}  # the same minute twice (overlapping chunks): the later one wins
    rows = [
        PriceHistoryIntraday(
            instrument_id=instrument_id,
            timestamp=bar.ts,
            interval="1m",
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            source_id=provider_id,
            created_at=now,
            updated_at=now,
        )
        for bar in latest.values()
    ]
    if not rows:
        return 0
    with transaction.atomic():
        if only_missing:
            PriceHistoryIntraday.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
        else:
            PriceHistoryIntraday.objects.bulk_create(
                rows,
                batch_size=2000,
                update_conflicts=True,
                unique_fields=["instrument", "interval", "timestamp"],
                update_fields=INTRADAY_UPDATE_FIELDS,
            )
    return len(rows)


def daily_history_upsert(*, instrument_id: int, provider_id: int, bars: Iterable[DailyBar]) -> int:
    """Write a provider's daily bars of one instrument (``from_rollup=False``); returns the count.

    ``previous_close`` is the close of the trading day before, from this series or, for its
    first day, the latest stored daily bar before it.
    """
    ordered = sorted({bar.day: bar for bar in bars}.values(), key=lambda bar: bar.day)
    if not ordered:
        return 0
    now = datetime.now(UTC)
    previous = (
        PriceHistoryDaily.objects.filter(instrument_id=instrument_id, date__lt=ordered[0].day)
        .order_by("-date")
        .values_list("close", flat=True)
        .first()
    )
    rows = []
    for bar in ordered:
        rows.append(
            PriceHistoryDaily(
                instrument_id=instrument_id,
                date=bar.day,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
                adj_close=bar.adj_close,
                previous_close=previous,
                dividend=bar.dividend,
                split=bar.split,
                source_id=provider_id,
                from_rollup=False,
                created_at=now,
                updated_at=now,
            )
        )
        previous = bar.close
    with transaction.atomic():
        PriceHistoryDaily.objects.bulk_create(
            rows,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["instrument", "date"],
            update_fields=DAILY_UPDATE_FIELDS,
        )
    return len(rows)
