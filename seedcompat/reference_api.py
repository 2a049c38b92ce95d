"""The seed's sectors (``/sector``) and instrument types (``/instrument_type``) over ours.

Thin over ``instruments.selectors`` and ``instruments.services``:

* ``SectorInDb`` is ``{id, name, description}`` and ``InstrumentTypeInDb`` is ``{id, code, name,
  description, category, display_order}``. We keep no description, category or display
  order: they are accepted on input, ignored, and answered as ``null``.
* Lists are bare arrays: sectors by name, instrument types by code (our selectors' order).
* Everyone signed in reads (the seed asks an admin for ``GET /sector/{id}`` and
  ``GET /instrument_type/{id}``; the front end only calls them from admin pages); writes are
  admin only. ``PUT`` and ``DELETE`` work (both are broken or missing in the seed).
* Deleting one that instruments use is a 409 with our text, as our own API answers; with
  ``?force=true`` a sector is deleted and its instruments are left without one, an instrument
  type (which every instrument needs) is deactivated instead. A duplicate name or code is a
  400. Deletes answer ``{"message": ...}``.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import re_path
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import Conflict
from core.api.params import query_flag
from instruments.models import InstrumentType, Sector
from instruments.selectors import instrument_type_list, sector_list
from instruments.services import (
    ReferenceInUseError,
    instrument_type_create,
    instrument_type_delete,
    instrument_type_update,
    sector_create,
    sector_delete,
    sector_update,
)
from seedcompat.common import IsAdminRole, SeedApiView

# Path ids: digits only (the URL pattern), at most a bigint (anything larger cannot exist).
ID = r"(?P<pk>[0-9]{1,18})"


class SeedWriteView(SeedApiView):
    """A compat view whose reads need a signed-in user and whose writes need an admin.

    ``admin_only`` (``SeedApiView``) makes every method admin only; ``admin_methods`` names the
    methods that are (every unsafe one unless a subclass narrows it).
    """

    admin_methods: frozenset[str] | None = None

    def get_permissions(self):
        if getattr(self, "admin_only", False):
            return super().get_permissions()
        methods = self.admin_methods
        unsafe = self.request.method not in SAFE_METHODS if methods is None else self.request.method in methods
        return [IsAuthenticated(), IsAdminRole()] if unsafe else [IsAuthenticated()]


def message(text: str) -> Response:
    """A delete's answer: the seed front end parses every 2xx body as JSON."""
    return Response({"message": text})


# --- sectors --------------------------------------------------------------------------------


def sector_in_db(sector: Sector) -> dict[str, Any]:
    return {"id": sector.pk, "name": sector.name, "description": None}


class SectorInput(serializers.Serializer):
    """``{name, description}``; ``description`` is accepted and not kept. Unknown keys are ignored."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class SectorListView(SeedWriteView):
    """``GET /sector`` (bare array by name), ``POST /sector/`` (admin)."""

    def get(self, request: Request) -> Response:
        return Response([sector_in_db(s) for s in sector_list()])

    def post(self, request: Request) -> Response:
        data = SectorInput(data=request.data)
        data.is_valid(raise_exception=True)
        sector = sector_create(name=data.validated_data["name"])
        return Response(sector_in_db(sector), status=status.HTTP_201_CREATED)


class SectorDetailView(SeedWriteView):
    """``GET``, ``PUT`` (admin), ``DELETE`` (admin) ``/sector/{id}``."""

    def get(self, request: Request, pk: str) -> Response:
        return Response(sector_in_db(get_object_or_404(sector_list(), pk=pk)))

    def put(self, request: Request, pk: str) -> Response:
        sector = get_object_or_404(sector_list(), pk=pk)
        data = SectorInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {k: v for k, v in data.validated_data.items() if k == "name"}
        return Response(sector_in_db(sector_update(sector=sector, data=changes)))

    def delete(self, request: Request, pk: str) -> Response:
        sector = get_object_or_404(sector_list(), pk=pk)
        try:
            moved = sector_delete(sector=sector, force=query_flag(request, "force"))
        except ReferenceInUseError as exc:
            raise Conflict(str(exc)) from exc
        suffix = f" ({moved} instruments left without a sector)" if moved else ""
        return message(f"Sector deleted successfully{suffix}")


# --- instrument types -----------------------------------------------------------------------


def instrument_type_in_db(kind: InstrumentType) -> dict[str, Any]:
    return {
        "id": kind.pk,
        "code": kind.code,
        "name": kind.name,
        "description": None,
        "category": None,
        "display_order": None,
    }


class InstrumentTypeInput(serializers.Serializer):
    """``{code, name, description, category, display_order}``; only code and name are kept."""

    code = serializers.CharField(max_length=16)
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    category = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    display_order = serializers.IntegerField(required=False, allow_null=True)


class InstrumentTypeListView(SeedWriteView):
    """``GET /instrument_type/`` (bare array by code), ``POST`` (admin)."""

    def get(self, request: Request) -> Response:
        return Response([instrument_type_in_db(t) for t in instrument_type_list()])

    def post(self, request: Request) -> Response:
        data = InstrumentTypeInput(data=request.data)
        data.is_valid(raise_exception=True)
        kind = instrument_type_create(code=data.validated_data["code"], name=data.validated_data["name"])
        return Response(instrument_type_in_db(kind), status=status.HTTP_201_CREATED)


class InstrumentTypeDetailView(SeedWriteView):
    """``GET``, ``PUT`` (admin), ``DELETE`` (admin) ``/instrument_type/{id}``."""

    def get(self, request: Request, pk: str) -> Response:
        return Response(instrument_type_in_db(get_object_or_404(instrument_type_list(), pk=pk)))

    def put(self, request: Request, pk: str) -> Response:
        kind = get_object_or_404(instrument_type_list(), pk=pk)
        data = InstrumentTypeInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {k: v for k, v in data.validated_data.items() if k in ("code", "name")}
        return Response(instrument_type_in_db(instrument_type_update(instrument_type=kind, data=changes)))

    def delete(self, request: Request, pk: str) -> Response:
        kind = get_object_or_404(instrument_type_list(), pk=pk)
        try:
            kept = instrument_type_delete(instrument_type=kind, force=query_flag(request, "force"))
        except ReferenceInUseError as exc:
            raise Conflict(str(exc)) from exc
        if kept is not None:
            return message("Instrument type is in use: deactivated instead of deleted")
        return message("Instrument type deleted successfully")


urlpatterns = [
    re_path(r"^sector/?$", SectorListView.as_view(), name="seed-sector-list"),
    re_path(rf"^sector/{ID}/?$", SectorDetailView.as_view(), name="seed-sector-detail"),
    re_path(r"^instrument_type/?$", InstrumentTypeListView.as_view(), name="seed-instrument-type-list"),
    re_path(rf"^instrument_type/{ID}/?$", InstrumentTypeDetailView.as_view(), name="seed-instrument-type-detail"),
]
