"""The seed's instrument routes (``/instrument/...``) over ``instruments`` and ``ingestion``.

``InstrumentInDb`` is ``{id, symbol, name, exchange_id, instrument_type_id, sector_id,
blacklisted, delisted, should_record_data, is_active}``: ``symbol`` is the compat symbol
(``seedcompat.symbols``: ours when unique, ``SYMBOL.EXCHANGE`` when several exchanges list
it) and ``should_record_data`` is our ``record_data``. Every path that takes a symbol accepts
the compat symbol, ``EXCHANGE:SYMBOL`` and the plain symbol when it is unique.

Visibility: admins see every instrument; other users only active instruments on active
exchanges (hidden ones are a 404 for them, as in the seed).

Where we differ from the seed, deliberately:

* ``POST /instrument/`` creates the instrument active (the seed hides it until someone sets
  ``is_active``, which its front end cannot do) and not recording (as the seed: a new
  instrument has no provider mapping yet, and recording needs one).
* ``DELETE /instrument/{id}`` (missing in the seed) deletes an instrument without stored
  price history; with history it is a 409 (our delete guard), unless ``?force=true``, which
  deactivates it and keeps the history.
* ``PATCH /instrument/{id}/recording?should_record=false`` stops recording but **keeps** the
  stored history (the seed deletes all of it). Enabling needs an active provider mapping
  (400 otherwise, with the seed's text).
* ``GET /instrument/search`` without ``exchange`` searches every exchange (the seed: 404),
  ranked as our own search (exact symbol, symbol prefix, name prefix, the rest), 10 rows.
* ``GET /instrument/list/{EXCHANGE}`` is ordered by symbol (the seed: by last update), at most
  ``limit`` rows (default 200 as the seed, up to 1000; ``order_by=desc`` reverses).
* ``GET /instrument/details/{EXCHANGE:SYMBOL}`` answers 404 for an unknown instrument (the
  seed: 200 with ``null``); ``GET /instrument/`` (no seed route) lists every instrument.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import re_path
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import Conflict
from core.api.params import parse_bool, query_flag
from core.api.permissions import is_admin
from exchanges.models import Exchange
from instruments.models import Instrument, InstrumentType, Sector
from instruments.search import MAX_SEARCH_LENGTH, search_instruments
from instruments.selectors import instrument_list
from instruments.services import InstrumentHasHistoryError, instrument_create, instrument_delete, instrument_update
from seedcompat.reference_api import ID, SeedWriteView, message
from seedcompat.symbols import (
    AmbiguousSymbolError,
    InstrumentNotFoundError,
    compat_symbols,
    instrument_for_compat_symbol,
)

SEARCH_LIMIT = 10
LIST_LIMIT = 200
LIST_LIMIT_MAX = 1000
NO_MAPPING = "Cannot enable recording: No provider mapping found for this instrument."
BAD_EXCHANGE = "Invalid or Unsupported exchange code"
NOT_FOUND = "Instrument not found"


def instruments_in_db(instruments: list[Instrument]) -> list[dict[str, Any]]:
    """``InstrumentInDb`` for each instrument, with the compat symbols in one query."""
    symbols = compat_symbols(instruments)
    return [
        {
            "id": i.pk,
            "symbol": symbols[i.pk],
            "name": i.name,
            "exchange_id": i.exchange_id,
            "instrument_type_id": i.instrument_type_id,
            "sector_id": i.sector_id,
            "blacklisted": i.blacklisted,
            "delisted": i.delisted,
            "should_record_data": i.record_data,
            "is_active": i.is_active,
        }
        for i in instruments
    ]


def instrument_in_db(instrument: Instrument) -> dict[str, Any]:
    return instruments_in_db([instrument])[0]


def _visible(request: Request, queryset: QuerySet[Instrument]) -> QuerySet[Instrument]:
    """Everything for admins; active instruments on active exchanges for everyone else."""
    if is_admin(request.user):
        return queryset
    return queryset.filter(is_active=True, exchange__is_active=True)


def _rows(request: Request) -> QuerySet[Instrument]:
    """The instruments this user may see, exchange loaded (no provider mappings: not shown here)."""
    return _visible(request, instrument_list().prefetch_related(None))


def _get(request: Request, pk: str) -> Instrument:
    instrument = _rows(request).filter(pk=pk).first()
    if instrument is None:
        raise NotFound(NOT_FOUND)
    return instrument


def _by_symbol(request: Request, symbol: str) -> Instrument:
    try:
        return instrument_for_compat_symbol(symbol, include_inactive=is_admin(request.user))
    except InstrumentNotFoundError as exc:
        raise NotFound(NOT_FOUND) from exc
    except AmbiguousSymbolError as exc:
        raise ValidationError({"symbol": [str(exc)]}) from exc


def _exchange(request: Request, code: str) -> Exchange:
    exchanges = Exchange.objects.all() if is_admin(request.user) else Exchange.objects.filter(is_active=True)
    found = exchanges.filter(code__iexact=code.strip()).first() if "\x00" not in code else None
    if found is None:
        raise NotFound(BAD_EXCHANGE)
    return found


def _int_param(request: Request, name: str, *, default: int | None = None, maximum: int = 2**63 - 1) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationError({name: [f"'{raw}' is not a whole number from 1 to {maximum}."]})
    return int(raw)


def _has_provider_mapping(instrument: Instrument) -> bool:
    """Recording needs a provider that knows the instrument (an active ``ingestion`` mapping)."""
    return instrument.provider_mappings.filter(is_active=True, provider__is_active=True).exists()


class InstrumentInput(serializers.Serializer):
    """The seed's create/update body; unknown keys are ignored (as the seed does)."""

    symbol = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=255, allow_blank=True, allow_null=True, required=False)
    exchange_id = serializers.PrimaryKeyRelatedField(queryset=Exchange.objects.all())
    instrument_type_id = serializers.PrimaryKeyRelatedField(queryset=InstrumentType.objects.all())
    sector_id = serializers.PrimaryKeyRelatedField(queryset=Sector.objects.all(), allow_null=True, required=False)
    blacklisted = serializers.BooleanField(required=False)
    delisted = serializers.BooleanField(required=False)
    should_record_data = serializers.BooleanField(required=False)

    def to_model(self) -> dict[str, Any]:
        """Our field names for what was sent (``should_record_data`` is not set here)."""
        names = {"exchange_id": "exchange", "instrument_type_id": "instrument_type", "sector_id": "sector"}
        out = {names.get(k, k): v for k, v in self.validated_data.items() if k != "should_record_data"}
        if "name" in out:
            out["name"] = out["name"] or ""
        return out


class InstrumentListView(SeedWriteView):
    """``GET /instrument/`` (every visible instrument), ``POST /instrument/`` (admin)."""

    def get(self, request: Request) -> Response:
        limit = _int_param(request, "limit", default=LIST_LIMIT, maximum=LIST_LIMIT_MAX)
        return Response(instruments_in_db(list(_rows(request)[:limit])))

    def post(self, request: Request) -> Response:
        body = InstrumentInput(data=request.data)
        body.is_valid(raise_exception=True)
        instrument = instrument_create(**body.to_model(), record_data=False, is_active=True)
        return Response(instrument_in_db(instrument), status=status.HTTP_201_CREATED)


class ExchangeInstrumentsView(SeedWriteView):
    """``GET /instrument/list/{EXCHANGE}?instrument_type_id=&recording_only=``: a bare array."""

    def get(self, request: Request, exchange: str) -> Response:
        found = _exchange(request, exchange)
        rows = _rows(request).filter(exchange=found)
        type_id = _int_param(request, "instrument_type_id")
        if type_id is not None:
            rows = rows.filter(instrument_type_id=type_id)
        if query_flag(request, "recording_only"):
            rows = rows.filter(record_data=True)
        order = request.query_params.get("order_by", "asc").strip().lower()
        if order not in ("asc", "desc"):
            raise ValidationError({"order_by": ["Use asc or desc."]})
        rows = rows.order_by(*(("-symbol", "-pk") if order == "desc" else ("symbol", "pk")))
        limit = _int_param(request, "limit", default=LIST_LIMIT, maximum=LIST_LIMIT_MAX)
        return Response(instruments_in_db(list(rows[:limit])))


class InstrumentBySymbolView(SeedWriteView):
    """``GET /instrument/by-symbol/{symbol}``: the symbol is a raw path segment (``^``, ``&``, ``.``)."""

    def get(self, request: Request, symbol: str) -> Response:
        return Response(instrument_in_db(_by_symbol(request, symbol)))


class InstrumentDetailsView(SeedWriteView):
    """``GET /instrument/details/{EXCHANGE:SYMBOL}``."""

    def get(self, request: Request, key: str) -> Response:
        if "\x00" in key:
            raise NotFound(NOT_FOUND)
        code, sep, symbol = key.partition(":")
        if not sep or not code.strip() or not symbol.strip():
            raise ValidationError({"key": ["Expected EXCHANGE:SYMBOL, for example NSE:RELIANCE."]})
        exchange = _exchange(request, code)
        instrument = _rows(request).filter(exchange=exchange, symbol__iexact=symbol.strip()).first()
        if instrument is None:
            raise NotFound(NOT_FOUND)
        return Response(instrument_in_db(instrument))


class InstrumentSearchView(SeedWriteView):
    """``GET /instrument/search?query=[&exchange=]``: ranked, at most 10, every exchange without ``exchange``."""

    def get(self, request: Request) -> Response:
        text = request.query_params.get("query", "").strip()
        if not text:
            raise ValidationError({"query": ["Give the text to search for."]})
        if len(text) > MAX_SEARCH_LENGTH or "\x00" in text:
            raise ValidationError({"query": [f"At most {MAX_SEARCH_LENGTH} characters."]})
        rows = _rows(request)
        code = request.query_params.get("exchange", "").strip()
        if code:
            rows = rows.filter(exchange=_exchange(request, code))
        return Response(instruments_in_db(list(search_instruments(rows, text)[:SEARCH_LIMIT])))


class InstrumentDetailView(SeedWriteView):
    """``GET``, ``PUT`` (admin), ``DELETE`` (admin) ``/instrument/{id}``."""

    def get(self, request: Request, pk: str) -> Response:
        return Response(instrument_in_db(_get(request, pk)))

    def put(self, request: Request, pk: str) -> Response:
        instrument = _get(request, pk)
        body = InstrumentInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        changes = body.to_model()
        if changes.get("symbol") == compat_symbols([instrument])[instrument.pk]:
            # The edit form sends back the symbol it was shown (``XYZ.NSE`` for a shared one).
            del changes["symbol"]
        return Response(instrument_in_db(instrument_update(instrument=instrument, data=changes)))

    def delete(self, request: Request, pk: str) -> Response:
        instrument = _get(request, pk)
        try:
            kept = instrument_delete(instrument=instrument, force=query_flag(request, "force"))
        except InstrumentHasHistoryError as exc:
            raise Conflict(str(exc)) from exc
        if kept is not None:
            return message("Instrument deactivated; its price history is kept")
        return message("Instrument deleted successfully")


class InstrumentRecordingView(SeedWriteView):
    """``PATCH /instrument/{id}/recording?should_record=true|false`` (admin, no body): InstrumentInDb back."""

    admin_only = True

    def patch(self, request: Request, pk: str) -> Response:
        raw = request.query_params.get("should_record", "")
        try:
            should_record = parse_bool(raw)
        except ValueError as exc:
            raise ValidationError({"should_record": [str(exc)]}) from exc
        instrument = _get(request, pk)
        if should_record and not _has_provider_mapping(instrument):
            raise ValidationError(NO_MAPPING)
        if instrument.record_data != should_record:
            instrument = instrument_update(instrument=instrument, data={"record_data": should_record})
        return Response(instrument_in_db(instrument))


class RecordingInstrumentsView(SeedWriteView):
    """``GET /instrument/recording/all`` (admin): every instrument being recorded, a bare array."""

    admin_only = True

    def get(self, request: Request) -> Response:
        return Response(instruments_in_db(list(_rows(request).filter(record_data=True))))


urlpatterns = [
    re_path(r"^instrument/?$", InstrumentListView.as_view(), name="seed-instrument-list"),
    re_path(r"^instrument/search/?$", InstrumentSearchView.as_view(), name="seed-instrument-search"),
    re_path(r"^instrument/recording/all/?$", RecordingInstrumentsView.as_view(), name="seed-instrument-recording-all"),
    re_path(
        r"^instrument/list/(?P<exchange>[^/]+)/?$",
        ExchangeInstrumentsView.as_view(),
        name="seed-instrument-by-exchange",
    ),
    re_path(
        r"^instrument/by-symbol/(?P<symbol>.+?)/?$", InstrumentBySymbolView.as_view(), name="seed-instrument-by-symbol"
    ),
    re_path(r"^instrument/details/(?P<key>.+?)/?$", InstrumentDetailsView.as_view(), name="seed-instrument-details"),
    re_path(rf"^instrument/{ID}/?$", InstrumentDetailView.as_view(), name="seed-instrument-detail"),
    re_path(rf"^instrument/{ID}/recording/?$", InstrumentRecordingView.as_view(), name="seed-instrument-recording"),
]
