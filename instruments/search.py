"""Instrument search: ``?search=`` on ``GET /instruments/``.

A search matches anywhere in the symbol, the name or the ISIN, regardless of case, and ranks
what it finds: the exact symbol first, then symbols starting with the text, then names
starting with it, then everything else that contains it; inside a rank by symbol, then
exchange code.

On PostgreSQL the three ``UPPER(column) LIKE UPPER('%text%')`` conditions Django writes for
``icontains`` are served by GIN trigram indexes on ``UPPER(symbol)``, ``UPPER(name)`` and
``UPPER(isin)`` (pg_trgm, migration ``0002_instrument_search_trigram``), so a search reads the
matching rows instead of scanning every instrument. Texts shorter than three characters hold
no trigram: PostgreSQL plans those as a scan, which the ranking still orders. On SQLite (the
embedded mode) the same query is a plain ``LIKE`` scan, case-insensitive for ASCII.
"""

from __future__ import annotations

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

# The longest text a client may search for (the longest column searched, the name, is 255).
MAX_SEARCH_LENGTH = 255

# The trigram indexes the migration creates on PostgreSQL: (index name, column).
TRIGRAM_INDEXES = (
    ("instruments_symbol_upper_trgm", "symbol"),
    ("instruments_name_upper_trgm", "name"),
    ("instruments_isin_upper_trgm", "isin"),
)

EXACT_SYMBOL, SYMBOL_PREFIX, NAME_PREFIX, CONTAINS = 0, 1, 2, 3


def search_instruments(queryset: QuerySet, text: str) -> QuerySet:
    """``queryset`` narrowed to instruments matching ``text``, ranked (``search_rank``, 0 best).

    Blank text leaves the queryset as it is. ``%`` and ``_`` in the text match themselves.
    """
    value = text.strip()
    if not value:
        return queryset
    rank = Case(
        When(symbol__iexact=value, then=Value(EXACT_SYMBOL)),
        When(symbol__istartswith=value, then=Value(SYMBOL_PREFIX)),
        When(name__istartswith=value, then=Value(NAME_PREFIX)),
        default=Value(CONTAINS),
        output_field=IntegerField(),
    )
    return (
        queryset.filter(Q(symbol__icontains=value) | Q(name__icontains=value) | Q(isin__icontains=value))
        .annotate(search_rank=rank)
        .order_by("search_rank", "symbol", "exchange__code", "pk")
    )
