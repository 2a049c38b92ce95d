"""What the history clients return and raise, and the retry loop they share."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

logger = logging.getLogger(__name__)


class BackfillError(ValueError):
    """The backfill cannot run as asked (unknown provider, impossible dates, unknown symbols, ...).

    Raised before anything is written. ``errors`` maps each argument to its problems.
    """

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {"non_field_errors": [message]}


class HistoryFetchError(Exception):
    """A provider answered a history request with an error (or nothing usable)."""


class RateLimited(HistoryFetchError):
    """The provider said too many requests (HTTP 429 or its own rate-limit error)."""

    def __init__(self, message: str = "rate limited", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class IntradayBar:
    """A 1-minute bar from a provider's history; ``ts`` is its open instant (UTC-aware)."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True, slots=True)
class DailyBar:
    """A daily bar from a provider's history; ``day`` is the exchange-local trading date."""

    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int
    adj_close: float | None = None
    dividend: float | None = None
    split: float | None = None


def with_backoff[T](
    fetch: Callable[[], T], *, what: str, attempts: int = 5, base_delay_s: float = 1.0, max_delay_s: float = 60.0
) -> T:
    """Call ``fetch``; on ``RateLimited`` wait (exponentially longer, or as the provider says) and retry."""
    delay = base_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return fetch()
        except RateLimited as exc:
            if attempt == attempts:
                raise
            wait = exc.retry_after if exc.retry_after is not None else delay
            wait = min(max(wait, 0.0), max_delay_s)
            logger.warning("%s: rate limited (attempt %d/%d); retrying in %.2fs", what, attempt, attempts, wait)
            time.sleep(wait)
            delay = min(delay * 2, max_delay_s)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
