"""Watchlists: each user's named lists of instruments (reads and writes).

Every user has at least one list. The first one, "Default", holding the demo instruments, is
made on first access by ``watchlist_default_ensure`` (called by the dashboard and the API), and
the last list cannot be deleted, so the default never comes back behind the user's back.
Lookups always go through the owner: another user's list is simply not found.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Prefetch, Q, QuerySet

from accounts.models import User, Watchlist, WatchlistItem
from instruments.models import Instrument

DEFAULT_WATCHLIST_NAME = "Default"
MAX_WATCHLISTS_PER_USER = 50
MAX_ITEMS_PER_WATCHLIST = 200
# Largest PostgreSQL bigint: a larger id cannot exist and would make the query fail.
MAX_ID = 2**63 - 1


class WatchlistLastError(Exception):
    """The user's only watchlist cannot be deleted."""


# --- reads ------------------------------------------------------------------------------------
def watchlist_list(*, user: User) -> QuerySet[Watchlist]:
    """The user's watchlists, oldest first, with their items and instruments loaded in bulk."""
    items = WatchlistItem.objects.select_related("instrument__exchange", "instrument__instrument_type").order_by(
        "position", "id"
    )
    return Watchlist.objects.filter(user=user).prefetch_related(Prefetch("items", queryset=items))


def watchlist_get(*, user: User, watchlist_id: int) -> Watchlist:
    """One of the user's watchlists; ``Watchlist.DoesNotExist`` for another user's or an unknown id."""
    if not 0 < watchlist_id <= MAX_ID:
        raise Watchlist.DoesNotExist(f"No watchlist {watchlist_id}.")
    return watchlist_list(user=user).get(pk=watchlist_id)


def demo_instruments() -> list[Instrument]:
    """The active demo instruments (``instruments.reference_data.DEMO_INSTRUMENTS``), in their listed order."""
    from instruments.reference_data import DEMO_INSTRUMENTS

    wanted = [(spec["exchange"], spec["symbol"]) for spec in DEMO_INSTRUMENTS]
    query = Q()
    for exchange, symbol in wanted:
        query |= Q(exchange__code=exchange, symbol=symbol)
    found = {
        (i.exchange.code, i.symbol): i
        for i in Instrument.objects.filter(query, is_active=True, exchange__is_active=True).select_related("exchange")
    }
    return [found[key] for key in wanted if key in found]


# --- writes -----------------------------------------------------------------------------------
def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError({"name": ["Give the watchlist a name."]})
    if len(name) > Watchlist._meta.get_field("name").max_length:
        raise ValidationError({"name": [f"At most {Watchlist._meta.get_field('name').max_length} characters."]})
    return name


def _name_taken(*, user: User, name: str, exclude_id: int | None = None) -> bool:
    qs = Watchlist.objects.filter(user=user, name__iexact=name)
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return qs.exists()


def _name_taken_error(name: str) -> ValidationError:
    return ValidationError({"name": [f"You already have a watchlist named {name!r}."]})


def watchlist_default_ensure(*, user: User) -> Watchlist | None:
    """Give a user without any watchlist the default one, filled with the demo instruments.

    Returns the new list, or ``None`` when the user already had one. Two first requests at
    once meet on the unique name: the loser finds the winner's list and returns ``None``.
    """
    if Watchlist.objects.filter(user=user).exists():
        return None
    try:
        with transaction.atomic():
            watchlist = Watchlist.objects.create(user=user, name=DEFAULT_WATCHLIST_NAME)
            WatchlistItem.objects.bulk_create(
                WatchlistItem(watchlist=watchlist, instrument=instrument, position=position)
                for position, instrument in enumerate(demo_instruments()[:MAX_ITEMS_PER_WATCHLIST])
            )
    except IntegrityError:
        return None
    return watchlist


def watchlist_create(*, user: User, name: str) -> Watchlist:
    """A new, empty watchlist; ``ValidationError`` (``name``) for a blank or taken name or too many lists."""
    name = _clean_name(name)
    if Watchlist.objects.filter(user=user).count() >= MAX_WATCHLISTS_PER_USER:
        raise ValidationError({"name": [f"At most {MAX_WATCHLISTS_PER_USER} watchlists per user."]})
    if _name_taken(user=user, name=name):
        raise _name_taken_error(name)
    try:
        with transaction.atomic():
            return Watchlist.objects.create(user=user, name=name)
    except IntegrityError as exc:  # a concurrent request took the name first
        raise _name_taken_error(name) from exc


def watchlist_rename(*, watchlist: Watchlist, name: str) -> Watchlist:
    """Rename a watchlist; ``ValidationError`` (``name``) for a blank name or one the user already uses."""
    name = _clean_name(name)
    if name == watchlist.name:
        return watchlist
    if _name_taken(user=watchlist.user, name=name, exclude_id=watchlist.pk):
        raise _name_taken_error(name)
    watchlist.name = name
    try:
        with transaction.atomic():
            watchlist.save(update_fields=["name", "updated_at"])
    except IntegrityError as exc:
        raise _name_taken_error(name) from exc
    return watchlist


@transaction.atomic
def watchlist_delete(*, watchlist: Watchlist) -> None:
    """Delete a watchlist and its items; ``WatchlistLastError`` if it is the user's only one."""
    # Lock the owner's lists, so two deletes at once cannot remove the last two.
    owned = list(Watchlist.objects.select_for_update().filter(user_id=watchlist.user_id).values_list("pk", flat=True))
    if len(owned) <= 1:
        raise WatchlistLastError("This is your only watchlist; create another one before deleting it.")
    Watchlist.objects.filter(pk=watchlist.pk).delete()


def watchlist_item_add(*, watchlist: Watchlist, instrument: Instrument) -> WatchlistItem:
    """Append an active instrument to the list; ``ValidationError`` (``instrument``) if listed or the list is full."""
    if not instrument.is_active:
        raise ValidationError({"instrument": [f"{instrument} is not active."]})
    if watchlist.items.filter(instrument=instrument).exists():
        raise ValidationError({"instrument": [f"{instrument} is already on {watchlist.name!r}."]})
    if watchlist.items.count() >= MAX_ITEMS_PER_WATCHLIST:
        raise ValidationError({"instrument": [f"A watchlist holds at most {MAX_ITEMS_PER_WATCHLIST} instruments."]})
    last = watchlist.items.aggregate(last=Max("position"))["last"]
    try:
        with transaction.atomic():
            item = WatchlistItem.objects.create(
                watchlist=watchlist, instrument=instrument, position=0 if last is None else last + 1
            )
    except IntegrityError as exc:
        raise ValidationError({"instrument": [f"{instrument} is already on {watchlist.name!r}."]}) from exc
    Watchlist.objects.filter(pk=watchlist.pk).update(updated_at=item.created_at)
    return item


def watchlist_item_remove(*, watchlist: Watchlist, instrument_id: int) -> None:
    """Take an instrument off the list; ``WatchlistItem.DoesNotExist`` if it is not on it."""
    if not 0 < instrument_id <= MAX_ID:
        raise WatchlistItem.DoesNotExist(f"Instrument {instrument_id} is not on this watchlist.")
    deleted, _ = WatchlistItem.objects.filter(watchlist=watchlist, instrument_id=instrument_id).delete()
    if not deleted:
        raise WatchlistItem.DoesNotExist(f"Instrument {instrument_id} is not on this watchlist.")
