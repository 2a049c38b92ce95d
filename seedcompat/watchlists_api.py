"""The seed's watchlist routes (``watchlist/...``): thin views over ``accounts.watchlists``.

A watchlist answers as the seed's ``WatchlistInDb``:
``{id, user_id, name, show_on_dashboard, exchange_id, items}``, where ``items`` are the
instruments on it (the seed's ``InstrumentInDb``, ``symbol`` a compat symbol), because that is
how the front end reads them. Only the caller's own lists exist for the caller: another user's
list is a 404, like an unknown one.

Differences from the seed, on purpose: every user has at least one list (the ``Default`` one,
made on first listing, as our own ``/watchlists/``; its ``exchange_id`` is null because it
mixes exchanges) and the last list cannot be deleted (409); a list with an ``exchange_id``
takes only that exchange's instruments, and the error says so instead of the seed's
"Item already in watchlist"; an unknown instrument is a 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.urls import re_path
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import watchlists
from accounts.models import Watchlist, WatchlistItem
from core.api.errors import Conflict
from exchanges.models import Exchange
from instruments.models import Instrument
from seedcompat.common import SeedApiView
from seedcompat.symbols import compat_symbols, is_visible

WATCHLIST_NOT_FOUND = "Watchlist not found"


# --- output -----------------------------------------------------------------------------------
def instrument_row(instrument: Instrument, symbol: str) -> dict[str, Any]:
    """The seed's ``InstrumentInDb``."""
    return {
        "id": instrument.pk,
        "symbol": symbol,
        "name": instrument.name,
        "exchange_id": instrument.exchange_id,
        "instrument_type_id": instrument.instrument_type_id,
        "sector_id": instrument.sector_id,
        "blacklisted": instrument.blacklisted,
        "delisted": instrument.delisted,
        "should_record_data": instrument.record_data,
        "is_active": instrument.is_active,
    }


def _rows(lists: Iterable[Watchlist]) -> list[dict[str, Any]]:
    """``WatchlistInDb`` documents; like the seed, ``items`` leave out instruments no longer listed."""
    lists = list(lists)
    shown = {wl.pk: [item.instrument for item in wl.items.all() if is_visible(item.instrument)] for wl in lists}
    symbols = compat_symbols(i for instruments in shown.values() for i in instruments)
    return [
        {
            "id": wl.pk,
            "user_id": wl.user_id,
            "name": wl.name,
            "show_on_dashboard": wl.show_on_dashboard,
            "exchange_id": wl.exchange_id,
            "items": [instrument_row(i, symbols[i.pk]) for i in shown[wl.pk]],
        }
        for wl in lists
    ]


def _row(request: Request, watchlist_id: int) -> dict[str, Any]:
    # Read back through the selector, so every answer has the same shape and ordering.
    return _rows([watchlists.watchlist_get(user=request.user, watchlist_id=watchlist_id)])[0]


# --- input ------------------------------------------------------------------------------------
def _body(request: Request, allowed: set[str]) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise ValidationError("Send a JSON object.")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.")
    return data


def _id(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= watchlists.MAX_ID:
        raise ValidationError(f"{name} must be a positive integer.")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false.")
    return value


def _exchange(value: Any) -> Exchange | None:
    if value is None:
        return None
    exchange = Exchange.objects.filter(pk=_id(value, "exchange_id"), is_active=True).first()
    if exchange is None:
        raise ValidationError(f"Exchange {value} not found.")
    return exchange


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("name must be a string.")
    return value


def _service_error(exc: DjangoValidationError) -> ValidationError:
    """A service's field errors as one plain ``detail`` (the front end shows ``detail`` as text)."""
    return ValidationError(" ".join(exc.messages))


def _own(request: Request, watchlist_id: str) -> Watchlist:
    try:
        return watchlists.watchlist_get(user=request.user, watchlist_id=int(watchlist_id))
    except Watchlist.DoesNotExist:
        raise NotFound(WATCHLIST_NOT_FOUND) from None


def _set(watchlist: Watchlist, **fields: Any) -> None:
    """Store the seed-only settings of a list (its exchange, the dashboard flag)."""
    if not fields:
        return
    for name, value in fields.items():
        setattr(watchlist, name, value)
    watchlist.save(update_fields=[*fields, "updated_at"])


def _check_exchange(watchlist: Watchlist, exchange: Exchange | None) -> None:
    """A list for one exchange holds only that exchange's instruments."""
    if exchange is None:
        return
    others = sorted({item.instrument.exchange.code for item in watchlist.items.all()} - {exchange.code})
    if others:
        raise ValidationError(
            f"This watchlist holds instruments of {', '.join(others)}; it cannot be for {exchange.code} only."
        )


# --- views ------------------------------------------------------------------------------------
class WatchlistListApi(SeedApiView):
    """``GET``: the caller's lists (oldest first); ``POST {name, exchange_id, show_on_dashboard}``: a new one."""

    def get(self, request: Request) -> Response:
        watchlists.watchlist_default_ensure(user=request.user)
        return Response(_rows(watchlists.watchlist_list(user=request.user)))

    def post(self, request: Request) -> Response:
        data = _body(request, {"name", "exchange_id", "show_on_dashboard"})
        name = _name(data.get("name"))
        exchange = _exchange(data.get("exchange_id"))
        flag = _flag(data.get("show_on_dashboard", False), "show_on_dashboard")
        try:
            with transaction.atomic():
                watchlist = watchlists.watchlist_create(user=request.user, name=name)
                _set(watchlist, exchange=exchange, show_on_dashboard=flag)
        except DjangoValidationError as exc:
            raise _service_error(exc) from None
        return Response(_row(request, watchlist.pk), status=status.HTTP_201_CREATED)


class WatchlistDashboardApi(SeedApiView):
    """The caller's lists flagged ``show_on_dashboard``."""

    def get(self, request: Request) -> Response:
        return Response(_rows(watchlists.watchlist_list(user=request.user).filter(show_on_dashboard=True)))


class WatchlistShowOnDashboardApi(SeedApiView):
    """``PUT ...?show_on_dashboard=true|false``: flag or unflag one list."""

    def put(self, request: Request, watchlist_id: str) -> Response:
        watchlist = _own(request, watchlist_id)
        raw = request.query_params.get("show_on_dashboard", "").strip().lower()
        if raw not in {"true", "false", "1", "0"}:
            raise ValidationError("show_on_dashboard must be true or false.")
        _set(watchlist, show_on_dashboard=raw in {"true", "1"})
        return Response(_row(request, watchlist.pk))


class WatchlistDetailApi(SeedApiView):
    """One of the caller's lists: read, update (``name``, ``exchange_id``, ``show_on_dashboard``), delete."""

    def get(self, request: Request, watchlist_id: str) -> Response:
        return Response(_rows([_own(request, watchlist_id)])[0])

    def put(self, request: Request, watchlist_id: str) -> Response:
        watchlist = _own(request, watchlist_id)
        data = _body(request, {"name", "exchange_id", "show_on_dashboard"})
        fields: dict[str, Any] = {}
        if "exchange_id" in data:
            fields["exchange"] = _exchange(data["exchange_id"])
            _check_exchange(watchlist, fields["exchange"])
        if "show_on_dashboard" in data:
            fields["show_on_dashboard"] = _flag(data["show_on_dashboard"], "show_on_dashboard")
        try:
            with transaction.atomic():
                if data.get("name") is not None:
                    watchlists.watchlist_rename(watchlist=watchlist, name=_name(data["name"]))
                _set(watchlist, **fields)
        except DjangoValidationError as exc:
            raise _service_error(exc) from None
        return Response(_row(request, watchlist.pk))

    def delete(self, request: Request, watchlist_id: str) -> Response:
        watchlist = _own(request, watchlist_id)
        try:
            watchlists.watchlist_delete(watchlist=watchlist)
        except watchlists.WatchlistLastError as exc:
            raise Conflict(str(exc)) from None
        return Response({"message": "Watchlist deleted successfully"})


class WatchlistItemListApi(SeedApiView):
    """``POST {instrument_id}``: add an instrument, answer the item row ``{id, instrument_id, watchlist_id}``."""

    def post(self, request: Request, watchlist_id: str) -> Response:
        watchlist = _own(request, watchlist_id)
        data = _body(request, {"instrument_id"})
        instrument = (
            Instrument.objects.select_related("exchange")
            .filter(pk=_id(data.get("instrument_id"), "instrument_id"))
            .first()
        )
        if instrument is None or not is_visible(instrument):
            raise NotFound("Instrument not found")
        if watchlist.exchange_id is not None and instrument.exchange_id != watchlist.exchange_id:
            raise ValidationError(
                f"{instrument.symbol} is listed on {instrument.exchange.code}; "
                f"this watchlist is for {watchlist.exchange.code} instruments."
            )
        try:
            item = watchlists.watchlist_item_add(watchlist=watchlist, instrument=instrument)
        except DjangoValidationError as exc:
            raise _service_error(exc) from None
        return Response(
            {"id": item.pk, "instrument_id": instrument.pk, "watchlist_id": watchlist.pk},
            status=status.HTTP_201_CREATED,
        )


class WatchlistItemDetailApi(SeedApiView):
    """``DELETE``: take an instrument (by its id) off one of the caller's lists."""

    def delete(self, request: Request, watchlist_id: str, instrument_id: str) -> Response:
        watchlist = _own(request, watchlist_id)
        try:
            watchlists.watchlist_item_remove(watchlist=watchlist, instrument_id=int(instrument_id))
        except WatchlistItem.DoesNotExist:
            raise NotFound("Item not found in watchlist") from None
        return Response({"message": "Item removed from watchlist successfully"})


_ID = r"(?P<watchlist_id>[0-9]{1,19})"
urlpatterns = [
    re_path(r"^watchlist/?$", WatchlistListApi.as_view(), name="seed-watchlists"),
    re_path(r"^watchlist/dashboard/?$", WatchlistDashboardApi.as_view(), name="seed-watchlists-dashboard"),
    re_path(
        rf"^watchlist/show_on_dashboard/{_ID}/?$",
        WatchlistShowOnDashboardApi.as_view(),
        name="seed-watchlist-show-on-dashboard",
    ),
    re_path(rf"^watchlist/{_ID}/?$", WatchlistDetailApi.as_view(), name="seed-watchlist"),
    re_path(rf"^watchlist/{_ID}/items/?$", WatchlistItemListApi.as_view(), name="seed-watchlist-items"),
    re_path(
        rf"^watchlist/{_ID}/items/(?P<instrument_id>[0-9]{{1,19}})/?$",
        WatchlistItemDetailApi.as_view(),
        name="seed-watchlist-item",
    ),
]
