"""Where an exchange stands at an instant: open, closed, pre- or post-market, next open and close.

Built on the same sessions the ingestion uses (``exchanges.selectors``), so ``open`` here is
exactly ``exchange_is_open``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .models import Exchange
from .selectors import Holiday, Session, _require_aware, _tz, exchange_closures, exchange_sessions

# Market status values, the regular session first.
OPEN = "open"
CLOSED = "closed"
PRE_MARKET = "pre_market"
POST_MARKET = "post_market"

# How far ahead ``exchange_status`` looks for the next open and close.
STATUS_HORIZON_DAYS = 31


@dataclass(frozen=True, slots=True)
class MarketStatus:
    """Where an exchange stands at an instant ``at`` (UTC); see ``exchange_status``."""

    status: str
    at: datetime
    local_time: datetime
    trading_date: date
    session: Session | None
    next_open: datetime | None
    next_close: datetime | None
    holiday: Holiday | None


def _trading_intervals(sessions: list[Session]) -> list[tuple[datetime, datetime]]:
    """The regular trading intervals of ``sessions`` in order, split at breaks, joined where one
    session closes at the instant the next opens (an exchange open around the clock)."""
    intervals: list[tuple[datetime, datetime]] = []
    for session in sessions:
        if session.break_start and session.break_end:
            parts = [(session.open, session.break_start), (session.break_end, session.close)]
        else:
            parts = [(session.open, session.close)]
        for start, end in parts:
            if intervals and intervals[-1][1] >= start:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], end))
            else:
                intervals.append((start, end))
    return intervals


def _extended_hours_hold(session: Session, at: datetime) -> bool:
    """Whether ``at`` falls in ``session`` from its pre-market open to its post-market close."""
    first = min(session.open, session.pre_market_open or session.open)
    last = max(session.close, session.post_market_close or session.close)
    return first <= at < last


def exchange_status(*, exchange: Exchange, at: datetime) -> MarketStatus:
    """Where ``exchange`` stands at the instant ``at``: the same sessions the ingestion uses.

    ``status`` is ``open`` exactly when ``exchange_is_open`` says so; otherwise ``pre_market``
    or ``post_market`` inside a session's pre/post-market hours, else ``closed`` (a lunch break
    is closed). ``session`` is the session whose hours, pre/post market included, hold ``at``,
    else the one of the local date, else ``None``. ``next_open`` / ``next_close`` are the next
    instants the regular session opens / closes after ``at`` (a break closes and reopens it),
    ``None`` when there is none within ``STATUS_HORIZON_DAYS``. ``holiday`` is the local date's
    closure when the exchange is closed for one.
    """
    at = _require_aware(at)
    tz = _tz(exchange)
    local_time = at.astimezone(tz)
    today = local_time.date()
    window_end = today + timedelta(days=STATUS_HORIZON_DAYS)
    sessions = exchange_sessions(exchange=exchange, start=today - timedelta(days=1), end=window_end)
    intervals = _trading_intervals(sessions)

    current = next((iv for iv in intervals if iv[0] <= at < iv[1]), None)
    next_open = next((start for start, _ in intervals if start > at), None)
    later = (end for start, end in intervals if start > at)
    next_close = current[1] if current is not None else next(later, None)
    if next_close is not None and sessions[-1].date == window_end and next_close == sessions[-1].close:
        # Trading runs on to the window's last day and may go on past it: the close is not known.
        next_close = None

    session = next((candidate for candidate in sessions if _extended_hours_hold(candidate, at)), None)
    if current is not None:
        status = OPEN
    elif session is not None and at < session.open:
        status = PRE_MARKET
    elif session is not None and at >= session.close:
        status = POST_MARKET
    else:
        status = CLOSED
    if session is None:
        session = next((candidate for candidate in sessions if candidate.date == today), None)

    holiday = None
    if status == CLOSED and session is None:
        closures = exchange_closures(exchange=exchange, start=today, end=today)
        holiday = closures[0] if closures else None
    return MarketStatus(
        status=status,
        at=at,
        local_time=local_time,
        trading_date=today,
        session=session,
        next_open=next_open,
        next_close=next_close,
        holiday=holiday,
    )
