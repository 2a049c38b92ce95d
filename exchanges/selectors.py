"""Reads about when exchanges trade: sessions, holidays, early closes, trading dates.

Two sources, chosen per exchange:

* ``calendar_code`` set: exchange-calendars says which days trade and at which instants
  (holidays, early closes, late opens, lunch breaks). Where the calendar's regular hours differ
  from the row's ``market_open``/``market_close``, the calendar wins: it is maintained against
  the exchange's own announcements, the row is typed in by an operator. The row still supplies
  the pre/post-market hours, which the calendars do not know. An active ``ExchangeHoliday`` row
  overrides the calendar on its date (an unscheduled closure, changed hours, an extra session):
  ``is_closed`` closes the day; otherwise its ``open_time``/``close_time`` replace the
  calendar's, each falling back to the calendar's instant (or the row's hours on a day the
  calendar has no session).
* otherwise: the row's ``market_open``/``market_close`` in its time zone, Monday to Friday (every
  day when ``is_open_24_hours``), adjusted by active ``ExchangeHoliday`` rows. A row with
  ``is_closed`` closes the day; a row with ``is_closed=False`` gives special hours (its
  ``open_time``/``close_time``, each falling back to the regular one) and also opens a day that
  would otherwise be closed, such as a weekend special session.

Every instant returned is a UTC-aware datetime; instants passed in must be aware (naive ones are
rejected with ``ValueError`` rather than guessed). Dates are exchange-local session dates.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

import exchange_calendars
import pandas as pd
from django.db.models import QuerySet

from .models import Exchange, ExchangeHoliday

# Calendars are built from here (or the calendar's own lower bound, if later) to the end of
# next year (or the calendar's upper bound, if earlier).
CALENDAR_FIRST_DATE = date(2000, 1, 1)


class OutsideCalendarError(ValueError):
    """A date before the first one an exchange's exchange-calendars calendar covers."""


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session of an exchange; every instant is a UTC-aware datetime."""

    date: date
    open: datetime
    close: datetime
    pre_market_open: datetime | None = None
    post_market_close: datetime | None = None
    break_start: datetime | None = None
    break_end: datetime | None = None
    is_early_close: bool = False

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` falls in the regular session: open inclusive, close exclusive, not in a break."""
        if not self.open <= at < self.close:
            return False
        return not (self.break_start and self.break_end and self.break_start <= at < self.break_end)


@dataclass(frozen=True, slots=True)
class _CalendarTable:
    """A calendar flattened to plain Python objects so each look-up is a dict access."""

    first: date
    last: date
    weekmask: str
    sessions: dict[date, tuple[datetime, datetime, datetime | None, datetime | None]]
    early_closes: frozenset[date]
    holiday_names: dict[date, str]


@dataclass(frozen=True, slots=True)
class Holiday:
    """A day the exchange would normally trade but is closed.

    ``name`` is the calendar's or the operator's name for it, ``None`` when neither gives one
    (exchange-calendars names only its rule-based holidays, not its ad hoc closures).
    ``source`` is ``calendar`` (exchange-calendars) or ``override`` (an ``ExchangeHoliday`` row).
    """

    date: date
    name: str | None
    source: str


def _to_utc(value: pd.Timestamp) -> datetime | None:
    if pd.isna(value):
        return None
    return value.to_pydatetime().astimezone(UTC)


@functools.lru_cache(maxsize=64)
def _calendar_table(code: str, year: int) -> _CalendarTable:
    """Build (once per code and current year) the session table of an exchange-calendars calendar.

    ``year`` is part of the cache key so a long-running process moves its horizon on at New Year.
    """
    # The default build tells the calendar class's bounds; the dispatcher offers no other public way.
    bounds = type(exchange_calendars.get_calendar(code))
    start = CALENDAR_FIRST_DATE
    end = date(year + 1, 12, 31)
    if (bound_min := bounds.bound_min()) is not None:
        start = max(start, bound_min.date())
    if (bound_max := bounds.bound_max()) is not None:
        end = min(end, bound_max.date())
    calendar = exchange_calendars.get_calendar(code, start=start.isoformat(), end=end.isoformat())
    schedule = calendar.schedule
    holiday_names: dict[date, str] = {}
    if calendar.regular_holidays is not None:
        named = calendar.regular_holidays.holidays(start.isoformat(), end.isoformat(), return_name=True)
        holiday_names = {label.date(): str(name) for label, name in named.items()}
    sessions = {
        label.date(): (_to_utc(row.open), _to_utc(row.close), _to_utc(row.break_start), _to_utc(row.break_end))
        for label, row in zip(schedule.index, schedule.itertuples(index=False), strict=True)
    }
    return _CalendarTable(
        first=start,
        last=end,
        weekmask=calendar.weekmask,
        sessions=sessions,
        early_closes=frozenset(label.date() for label in calendar.early_closes),
        holiday_names=holiday_names,
    )


def _table_for(exchange: Exchange) -> _CalendarTable:
    return _calendar_table(exchange.calendar_code, datetime.now(tz=UTC).year)


def _tz(exchange: Exchange) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(exchange.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"Exchange {exchange.code} has an unknown time zone {exchange.timezone!r}.") from exc


def _require_aware(at: datetime) -> datetime:
    if not isinstance(at, datetime):
        raise ValueError(f"Expected a datetime, got {type(at).__name__}.")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("Naive datetime: pass a time-zone-aware datetime (UTC preferred).")
    return at.astimezone(UTC)


def _require_date(value: date, name: str) -> date:
    # A datetime is a date too, but which local date it means is ambiguous: refuse it.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError(f"{name} must be a date, not {type(value).__name__}.")
    return value


def _require_range(start: date, end: date) -> tuple[date, date]:
    start = _require_date(start, "start")
    end = _require_date(end, "end")
    if start > end:
        raise ValueError("start must not be after end.")
    return start, end


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _local(day: date, at: time, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _pre_post(exchange: Exchange, day: date, tz: zoneinfo.ZoneInfo) -> tuple[datetime | None, datetime | None]:
    if exchange.is_open_24_hours:
        return None, None
    pre = _local(day, exchange.pre_market_open, tz) if exchange.pre_market_open else None
    post = _local(day, exchange.post_market_close, tz) if exchange.post_market_close else None
    return pre, post


# --- calendar-backed exchanges -------------------------------------------------------------


def _check_in_table(table: _CalendarTable, exchange: Exchange, *days: date) -> None:
    for day in days:
        if day < table.first:
            raise OutsideCalendarError(
                f"{day} is before the {exchange.calendar_code} calendar of {exchange.code} (starts {table.first})."
            )


def _session_on(
    exchange: Exchange, table: _CalendarTable | None, day: date, tz: zoneinfo.ZoneInfo, holidays: dict
) -> Session | None:
    """The calendar's session (overridden by an ExchangeHoliday row) where it has data; past its
    last date (calendars ship holiday lists a year or two ahead), and for exchanges without a
    calendar, the exchange row's hours and ExchangeHoliday rows."""
    row = holidays.get(day)
    if table is not None and day <= table.last:
        if row is None:
            return _calendar_session(exchange, table, day, tz)
        return _calendar_override(exchange, table, day, tz, row)
    return _row_session(exchange, day, row, tz)


def _calendar_session(exchange: Exchange, table: _CalendarTable, day: date, tz: zoneinfo.ZoneInfo) -> Session | None:
    row = table.sessions.get(day)
    if row is None:
        return None
    open_, close, break_start, break_end = row
    pre, post = _pre_post(exchange, day, tz)
    return Session(
        date=day,
        open=open_,
        close=close,
        pre_market_open=pre,
        post_market_close=post,
        break_start=break_start,
        break_end=break_end,
        is_early_close=day in table.early_closes,
    )


def _calendar_override(
    exchange: Exchange, table: _CalendarTable, day: date, tz: zoneinfo.ZoneInfo, row: ExchangeHoliday
) -> Session | None:
    """A calendar day as an operator's ExchangeHoliday row changes it."""
    if row.is_closed:
        return None
    base = _calendar_session(exchange, table, day, tz)
    if base is None:
        # An extra session on a day the calendar closes: the row's special hours, else the row's hours.
        return _row_session(exchange, day, row, tz)
    open_ = _local(day, row.open_time, tz) if row.open_time else base.open
    close = _local(day, row.close_time, tz) if row.close_time else base.close
    if open_ >= close:
        raise ValueError(f"Special hours of {exchange.code} on {day} open at or after they close.")
    keeps_break = base.break_start is not None and open_ <= base.break_start and base.break_end <= close
    return replace(
        base,
        open=open_,
        close=close,
        break_start=base.break_start if keeps_break else None,
        break_end=base.break_end if keeps_break else None,
        is_early_close=close < base.close or (base.is_early_close and close == base.close),
    )


# --- exchanges described by their row and ExchangeHoliday rows ----------------------------------


def _holiday_rows(exchange: Exchange, start: date, end: date) -> dict[date, ExchangeHoliday]:
    rows = ExchangeHoliday.objects.filter(exchange=exchange, is_active=True, date__range=(start, end))
    return {row.date: row for row in rows}


def _row_session(
    exchange: Exchange, day: date, holiday: ExchangeHoliday | None, tz: zoneinfo.ZoneInfo
) -> Session | None:
    if holiday is not None and holiday.is_closed:
        return None
    if exchange.is_open_24_hours:
        regular_open = _local(day, time.min, tz)
        regular_close = _local(day + timedelta(days=1), time.min, tz)
    else:
        if holiday is None and day.weekday() >= 5:
            return None
        if exchange.market_open is None or exchange.market_close is None:
            raise ValueError(f"Exchange {exchange.code} has no market hours and is not open 24 hours.")
        regular_open = _local(day, exchange.market_open, tz)
        regular_close = _local(day, exchange.market_close, tz)
    open_ = _local(day, holiday.open_time, tz) if holiday is not None and holiday.open_time else regular_open
    close = _local(day, holiday.close_time, tz) if holiday is not None and holiday.close_time else regular_close
    if open_ >= close:
        raise ValueError(f"Special hours of {exchange.code} on {day} open at or after they close.")
    pre, post = _pre_post(exchange, day, tz)
    return Session(
        date=day,
        open=open_,
        close=close,
        pre_market_open=pre,
        post_market_close=post,
        is_early_close=close < regular_close,
    )


def _is_regular_trading_day(exchange: Exchange, day: date) -> bool:
    return exchange.is_open_24_hours or day.weekday() < 5


# --- public selectors ------------------------------------------------------------------------------


def exchange_holiday_list(
    *, exchange: Exchange, start: date | None = None, end: date | None = None
) -> QuerySet[ExchangeHoliday]:
    """The operator's ExchangeHoliday rows of ``exchange`` (active or not), by date, optionally within a range."""
    rows = ExchangeHoliday.objects.filter(exchange=exchange).order_by("date")
    if start is not None:
        rows = rows.filter(date__gte=start)
    if end is not None:
        rows = rows.filter(date__lte=end)
    return rows


def exchange_session(*, exchange: Exchange, date: date) -> Session | None:
    """The trading session of ``exchange`` on the exchange-local ``date``, or ``None`` when closed.

    Raises ``ValueError`` for a datetime instead of a date, or a date outside the exchange's calendar.
    """
    day = _require_date(date, "date")
    tz = _tz(exchange)
    table = _table_for(exchange) if exchange.calendar_code else None
    if table is not None:
        _check_in_table(table, exchange, day)
    return _session_on(exchange, table, day, tz, _holiday_rows(exchange, day, day))


def exchange_sessions(*, exchange: Exchange, start: date, end: date) -> list[Session]:
    """Every trading session of ``exchange`` from ``start`` to ``end`` (exchange-local dates, inclusive)."""
    start, end = _require_range(start, end)
    tz = _tz(exchange)
    table = _table_for(exchange) if exchange.calendar_code else None
    if table is not None:
        _check_in_table(table, exchange, start)
    holidays = _holiday_rows(exchange, start, end)
    candidates = (_session_on(exchange, table, day, tz, holidays) for day in _days(start, end))
    return [session for session in candidates if session is not None]


def exchange_closures(*, exchange: Exchange, start: date, end: date) -> list[Holiday]:
    """Days from ``start`` to ``end`` (inclusive) on which ``exchange`` would normally trade but is
    closed, with their names: the calendar's holidays and the operator's closing rows.

    Weekends of a Monday-to-Friday exchange are not holidays; a full closure is. A calendar
    holiday that an operator's row opens (``is_closed=False``) is not one either.
    """
    start, end = _require_range(start, end)
    rows = _holiday_rows(exchange, start, end)
    table = _table_for(exchange) if exchange.calendar_code else None
    closures: dict[date, Holiday] = {}
    if table is not None:
        _check_in_table(table, exchange, start)
        for day in _days(start, min(end, table.last)):
            if table.weekmask[day.weekday()] == "1" and day not in table.sessions:
                closures[day] = Holiday(date=day, name=table.holiday_names.get(day), source="calendar")
    for day, row in rows.items():
        if not row.is_closed:
            closures.pop(day, None)
            continue
        if table is not None and day <= table.last:
            regular = table.weekmask[day.weekday()] == "1"
        else:
            regular = _is_regular_trading_day(exchange, day)
        if regular:
            known = closures.get(day)
            name = row.name or (known.name if known else None)
            closures[day] = Holiday(date=day, name=name, source="override")
    return [closures[day] for day in sorted(closures)]


def exchange_holidays(*, exchange: Exchange, start: date, end: date) -> list[date]:
    """Dates from ``start`` to ``end`` (inclusive) on which ``exchange`` would normally trade but is closed.

    Weekends of a Monday-to-Friday exchange are not holidays; a full closure is.
    """
    return [holiday.date for holiday in exchange_closures(exchange=exchange, start=start, end=end)]


def exchange_early_closes(*, exchange: Exchange, start: date, end: date) -> list[Session]:
    """Sessions from ``start`` to ``end`` (inclusive) that close before the exchange's regular close."""
    return [session for session in exchange_sessions(exchange=exchange, start=start, end=end) if session.is_early_close]


def exchange_trading_date(*, exchange: Exchange, at: datetime) -> date:
    """The trading date of the instant ``at``: its calendar date in the exchange's time zone."""
    return _require_aware(at).astimezone(_tz(exchange)).date()


def exchange_is_open(*, exchange: Exchange, at: datetime) -> bool:
    """Whether ``exchange`` is in its regular session at the instant ``at`` (pre/post market and breaks excluded)."""
    at = _require_aware(at)
    tz = _tz(exchange)
    day = at.astimezone(tz).date()
    if not exchange.calendar_code:
        session = _row_session(exchange, day, _holiday_rows(exchange, day, day).get(day), tz)
        return session is not None and session.contains(at)
    table = _table_for(exchange)
    _check_in_table(table, exchange, day)
    holidays = _holiday_rows(exchange, day - timedelta(days=1), day + timedelta(days=1))
    # A calendar session may be labelled with a neighbouring date (an evening open for the next
    # day, or a calendar kept in UTC), so look on either side of the local date too.
    for label in (day - timedelta(days=1), day, day + timedelta(days=1)):
        session = _session_on(exchange, table, label, tz, holidays)
        if session is not None and session.contains(at):
            return True
    return False
