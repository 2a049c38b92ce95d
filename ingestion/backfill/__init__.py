"""Price history from providers' REST APIs: backfill, gap repair, and the rate limits they share.

Entry points (keyword-only, synchronous; the Celery tasks and ``backfill_history`` call them):

* ``backfill(*, provider_code, interval, start=None, end=None, symbols=None, progress=None) -> dict``
* ``repair_gaps(*, start=None, end=None, symbols=None, provider_code=None, now=None) -> dict``
* ``find_gaps(*, instrument, start_date, end_date, now=None) -> list[(start, end)]``

Bad arguments raise ``BackfillError`` (a ``ValueError``) before anything is written.
"""

from .base import BackfillError, HistoryFetchError, RateLimited
from .gaps import find_gaps, repair_gaps
from .service import backfill, backfill_plan, backfill_run

__all__ = [
    "BackfillError",
    "HistoryFetchError",
    "RateLimited",
    "backfill",
    "backfill_plan",
    "backfill_run",
    "find_gaps",
    "repair_gaps",
]
