"""Daily rollup: a trading date's 1-minute bars folded into ``PriceHistoryDaily`` once its session closed.

Per instrument of the exchange: ``open`` of the first bar, ``high``/``low`` the extremes,
``close`` of the last bar, ``volume`` the sum, ``previous_close`` the close of the latest
daily bar before that date. The bars are those of the regular session, [open, close) in UTC
as the exchange's calendar gives it (pre- and post-market bars stay out, as in the providers'
daily bars); a 24-hour exchange rolls up its whole local calendar day.

The rollup writes only its own rows (``from_rollup=True``): a daily bar from a provider's
history (adjusted close, dividends, splits) or typed in by an operator is never overwritten.
A date is rolled up again when intraday bars of that session changed after its rollup (late
bars, a backfill, gap repair).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import connection, transaction

from exchanges.models import Exchange
from exchanges.selectors import Session, exchange_session, exchange_sessions, exchange_trading_date
from instruments.models import Instrument
from marketdata.models import PriceHistoryDaily, PriceHistoryIntraday

logger = logging.getLogger(__name__)

# Bars of the last minute reach the database a few seconds after the close (the saver runs
# every few seconds): wait this long after a close before rolling the day up.
ROLLUP_GRACE = timedelta(minutes=10)
# How many past local days rollup_due looks at for sessions not rolled up (or changed since).
ROLLUP_LOOKBACK_DAYS = 7

_INTRADAY = PriceHistoryIntraday._meta.db_table
_DAILY = PriceHistoryDaily._meta.db_table
_INSTRUMENT = Instrument._meta.db_table


@dataclass(frozen=True)
class Window:
    """The UTC instants [start, end) whose 1-minute bars make up one trading date."""

    start: datetime
    end: datetime


def session_window(*, exchange: Exchange, session: Session) -> Window:
    """The bars of ``session`` that belong to its trading date: the regular session, or the
    whole local day for an exchange open 24 hours."""
    if exchange.is_open_24_hours:
        zone = ZoneInfo(exchange.timezone)
        start = datetime.combine(session.date, time.min, tzinfo=zone)
        end = datetime.combine(session.date + timedelta(days=1), time.min, tzinfo=zone)
        return Window(start.astimezone(UTC), end.astimezone(UTC))
    return Window(session.open, session.close)


# --- the aggregation --------------------------------------------------------------------------

_ROLLUP_SQL = f"""
    INSERT INTO {_DAILY} AS daily
        ("instrument_id", "date", "open", "high", "low", "close", "volume", "previous_close",
         "from_rollup", "source_id", "created_at", "updated_at", "is_active")
    SELECT bar."instrument_id",
           %(date)s,
           (array_agg(bar."open" ORDER BY bar."timestamp"))[1],
           max(bar."high"),
           min(bar."low"),
           (array_agg(bar."close" ORDER BY bar."timestamp" DESC))[1],
           coalesce(sum(bar."volume"), 0)::bigint,
           (SELECT before."close" FROM {_DAILY} before
             WHERE before."instrument_id" = bar."instrument_id" AND before."date" < %(date)s
             ORDER BY before."date" DESC LIMIT 1),
           true, NULL, %(now)s, %(now)s, true
      FROM {_INTRADAY} bar
      JOIN {_INSTRUMENT} instrument ON instrument."id" = bar."instrument_id"
     WHERE instrument."exchange_id" = %(exchange_id)s
       AND bar."interval" = '1m'
       AND bar."timestamp" >= %(start)s AND bar."timestamp" < %(end)s
     GROUP BY bar."instrument_id"
    ON CONFLICT ("instrument_id", "date") DO UPDATE
       SET "open" = EXCLUDED."open", "high" = EXCLUDED."high", "low" = EXCLUDED."low",
           "close" = EXCLUDED."close", "volume" = EXCLUDED."volume",
           "previous_close" = EXCLUDED."previous_close", "updated_at" = EXCLUDED."updated_at"
     WHERE daily."from_rollup"
"""  # noqa: S608 - only the models' own table names are interpolated; values are parameters


def _rollup_python(*, exchange: Exchange, day: date, window: Window, now: datetime) -> int:
    """The same rollup without PostgreSQL (SQLite in the embedded mode), one instrument at a time."""
    rows = (
        PriceHistoryIntraday.objects.filter(
            instrument__exchange=exchange, interval="1m", timestamp__gte=window.start, timestamp__lt=window.end
        )
        .order_by("instrument_id", "timestamp")
        .values_list("instrument_id", "open", "high", "low", "close", "volume")
    )
    folded: dict[int, dict] = {}
    for instrument_id, open_, high, low, close, volume in rows.iterator(chunk_size=5000):
        bar = folded.get(instrument_id)
        if bar is None:
            folded[instrument_id] = {"open": open_, "high": high, "low": low, "close": close, "volume": volume or 0}
            continue
        bar["high"] = max(bar["high"], high)
        bar["low"] = min(bar["low"], low)
        bar["close"] = close
        bar["volume"] += volume or 0
    written = 0
    for instrument_id, values in folded.items():
        previous = (
            PriceHistoryDaily.objects.filter(instrument_id=instrument_id, date__lt=day)
            .order_by("-date")
            .values_list("close", flat=True)
            .first()
        )
        existing = PriceHistoryDaily.objects.filter(instrument_id=instrument_id, date=day).first()
        if existing is None:
            PriceHistoryDaily.objects.create(
                instrument_id=instrument_id, date=day, previous_close=previous, from_rollup=True, **values
            )
        elif existing.from_rollup:
            PriceHistoryDaily.objects.filter(pk=existing.pk).update(previous_close=previous, updated_at=now, **values)
        else:
            continue
        written += 1
    return written


def rollup_day(*, exchange: Exchange, date: date) -> int:
    """Roll ``exchange``'s 1-minute bars of the trading ``date`` into daily bars; returns rows written.

    A date without a session (weekend, holiday) writes nothing. Rows not made by the rollup are
    left as they are and not counted.
    """
    session = exchange_session(exchange=exchange, date=date)
    if session is None:
        return 0
    window = session_window(exchange=exchange, session=session)
    now = datetime.now(UTC)
    with transaction.atomic():
        if connection.vendor != "postgresql":
            written = _rollup_python(exchange=exchange, day=date, window=window, now=now)
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    _ROLLUP_SQL,
                    {"date": date, "now": now, "exchange_id": exchange.pk, "start": window.start, "end": window.end},
                )
                written = cursor.rowcount
    logger.info("rollup %s %s: %d daily bars", exchange.code, date, written)
    return written


# --- what is due ---------------------------------------------------------------------------------


def rollup_needed(*, exchange: Exchange, date: date, window: Window) -> bool:
    """Whether a bar of the window has no daily row yet, or changed after its rollup row."""
    bars = PriceHistoryIntraday.objects.filter(
        instrument__exchange=exchange, interval="1m", timestamp__gte=window.start, timestamp__lt=window.end
    )
    daily = {
        instrument_id: (from_rollup, updated_at)
        for instrument_id, from_rollup, updated_at in PriceHistoryDaily.objects.filter(
            instrument__exchange=exchange, date=date
        ).values_list("instrument_id", "from_rollup", "updated_at")
    }
    if bars.exclude(instrument_id__in=list(daily)).exists():
        return True
    rolled = [instrument_id for instrument_id, (from_rollup, _) in daily.items() if from_rollup]
    if not rolled:
        return False
    oldest = min(daily[instrument_id][1] for instrument_id in rolled)
    # One cheap query: any rolled-up instrument with a bar newer than the oldest rollup row;
    # the exact per-instrument comparison runs only when that finds something.
    candidates = set(
        bars.filter(instrument_id__in=rolled, updated_at__gt=oldest).values_list("instrument_id", flat=True).distinct()
    )
    return any(
        bars.filter(instrument_id=instrument_id, updated_at__gt=daily[instrument_id][1]).exists()
        for instrument_id in candidates
    )


def rollup_due(*, now: datetime | None = None, exchange_codes: list[str] | None = None) -> dict:
    """Roll up every closed session of every active exchange that is not rolled up yet (or changed).

    Looks back ``ROLLUP_LOOKBACK_DAYS`` local days; a session counts as closed ``ROLLUP_GRACE``
    after its close. ``exchange_codes`` limits the run to those exchanges. Returns
    ``{"rolled": [{"exchange", "date", "rows"}], "errors": [...]}``; an exchange whose calendar
    cannot be read is reported in ``errors`` and the others go on.
    """
    now = now or datetime.now(UTC)
    result: dict = {"rolled": [], "errors": []}
    exchanges = Exchange.objects.filter(is_active=True).order_by("code")
    if exchange_codes is not None:
        exchanges = exchanges.filter(code__in=[code.upper() for code in exchange_codes])
    for exchange in exchanges:
        try:
            today = exchange_trading_date(exchange=exchange, at=now)
            sessions = exchange_sessions(
                exchange=exchange, start=today - timedelta(days=ROLLUP_LOOKBACK_DAYS), end=today
            )
            for session in sessions:
                window = session_window(exchange=exchange, session=session)
                if window.end + ROLLUP_GRACE > now:
                    continue
                if not rollup_needed(exchange=exchange, date=session.date, window=window):
                    continue
                rows = rollup_day(exchange=exchange, date=session.date)
                result["rolled"].append({"exchange": exchange.code, "date": session.date.isoformat(), "rows": rows})
        except ValueError as exc:
            logger.warning("rollup %s: %s", exchange.code, exc)
            result["errors"].append(f"{exchange.code}: {exc}")
    return result
