"""Long-running processes move what they built at start-up out of the collector's full passes.

A full (generation 2) garbage collection walks every tracked object: in a web or ingest
process that is Django, the URL conf, pandas, the exchange calendars... about 150,000
objects, 40 ms of a stalled event loop each time here, and it recurs as the process runs.
``gc.freeze()`` after start-up puts those objects in a permanent generation the collector
never walks (they live as long as the process anyway); what is allocated later is collected
as before. ``GC_FREEZE_AT_START`` (default true) turns it off.
"""

from __future__ import annotations

import gc
import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def freeze_after_startup(process: str) -> int | None:
    """Collect once, then freeze every object left; the number frozen (None when turned off)."""
    if not getattr(settings, "GC_FREEZE_AT_START", True):
        return None
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("%s: %d start-up objects frozen out of the garbage collector's full passes", process, frozen)
    return frozen
