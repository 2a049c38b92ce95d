"""The market snapshot: the latest quote of every streamed instrument of an exchange, or of a watchlist.

The instruments come from the database (one query, two for a watchlist); their quotes from
the tick store in one round trip (``latest_quotes``: one ``HMGET`` of ``md:q`` on Redis, a
dict lookup in the embedded memory store), however many instruments there are. Instruments
without a quote (never ticked, or the store was flushed) are left out of the results.

Sorting is done here, server-side, so gainers and losers need no client work: ``change_percent``,
``change``, ``volume`` or ``symbol``. Quotes without a value for the sort key (no previous close,
so no change) go last in either order; ties are broken by symbol, then exchange.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from accounts.models import User, Watchlist
from accounts.watchlists import watchlist_get
from exchanges.models import Exchange
from instruments.models import Instrument

SNAPSHOT_SORTS = ("change_percent", "change", "volume", "symbol")
SNAPSHOT_ORDERS = ("asc", "desc")
SNAPSHOT_MAX_LIMIT = 500


class SnapshotNotFoundError(Exception):
    """The exchange is unknown or inactive, or the watchlist is not the caller's."""


@dataclass(frozen=True)
class Snapshot:
    exchange: str | None
    as_of: dt.datetime
    total: int
    results: list[dict[str, Any]]


def snapshot_exchange(*, code: str) -> Exchange:
    """The active exchange with this code (any case); ``SnapshotNotFoundError`` otherwise."""
    exchange = Exchange.objects.filter(code__iexact=code.strip(), is_active=True).first()
    if exchange is None:
        raise SnapshotNotFoundError(f"No exchange {code!r}.")
    return exchange


def snapshot_instruments(
    *, exchange: Exchange | None, watchlist_id: int | None, user: User
) -> list[tuple[int, str, str]]:
    """``(id, symbol, exchange code)`` of the instruments the snapshot covers.

    An exchange alone: its instruments streamed live, as the ingestion decides it (active,
    ``record_data``, neither blacklisted nor delisted). A watchlist (the
    caller's own; another user's is not found): its active instruments, only those on
    ``exchange`` when one is given.
    """
    qs = Instrument.objects.filter(is_active=True, exchange__is_active=True)
    if watchlist_id is not None:
        try:
            watchlist = watchlist_get(user=user, watchlist_id=watchlist_id)
        except Watchlist.DoesNotExist:
            raise SnapshotNotFoundError(f"No watchlist {watchlist_id}.") from None
        qs = qs.filter(watchlist_items__watchlist=watchlist)
    else:
        qs = qs.filter(record_data=True, blacklisted=False, delisted=False)
    if exchange is not None:
        qs = qs.filter(exchange=exchange)
    return list(qs.order_by("pk").values_list("pk", "symbol", "exchange__code").distinct())


def sort_quotes(quotes: list[dict[str, Any]], *, sort: str, order: str, limit: int) -> list[dict[str, Any]]:
    """``quotes`` (API quote documents) sorted by ``sort`` in ``order``, valueless ones last, the first ``limit``."""
    by_symbol = sorted(quotes, key=lambda q: (q["symbol"], q["exchange"]))
    if sort == "symbol":
        ordered = by_symbol[::-1] if order == "desc" else by_symbol
        return ordered[:limit]
    valued = [q for q in by_symbol if q[sort] is not None]
    valueless = [q for q in by_symbol if q[sort] is None]
    # Python's sort is stable with reverse=True too: equal values keep the symbol order either way.
    valued.sort(key=lambda q: q[sort], reverse=order == "desc")
    return (valued + valueless)[:limit]


def market_snapshot(
    *,
    user: User,
    exchange_code: str | None,
    watchlist_id: int | None,
    sort: str,
    order: str,
    limit: int,
) -> Snapshot:
    """The latest quotes of an exchange's streamed instruments (or of a watchlist), sorted, up to ``limit``."""
    from marketdata.live.protocol import quote_payload
    from marketdata.live.store.sync import latest_quotes

    exchange = snapshot_exchange(code=exchange_code) if exchange_code else None
    instruments = snapshot_instruments(exchange=exchange, watchlist_id=watchlist_id, user=user)
    as_of = dt.datetime.now(dt.UTC)
    quotes = latest_quotes([pk for pk, _, _ in instruments])  # the one tick-store round trip
    documents = []
    for pk, symbol, code in instruments:
        quote = quotes.get(pk)
        if quote is not None:
            payload = quote_payload(quote, symbol, code)
            del payload["message_type"]
            documents.append(payload)
    return Snapshot(
        exchange=exchange.code if exchange else None,
        as_of=as_of,
        total=len(documents),
        results=sort_quotes(documents, sort=sort, order=order, limit=limit),
    )
