"""REST API of the instruments' reference data: ``/sectors/`` and ``/instrument-types/``.

Everyone signed in reads, admins write (the project's default permission). Names of sectors
and codes of instrument types are unique regardless of case (a duplicate is a 400 on that
field). Deleting one that instruments refer to is a 409 unless ``?force=true``: a sector is
then deleted and its instruments are left without a sector; an instrument type, which every
instrument must have, is deactivated instead (kept for its instruments).
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import Conflict
from core.api.pagination import LimitOffsetPagination
from core.api.params import query_flag
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin

from .models import InstrumentType, Sector
from .selectors import instrument_type_list, sector_list
from .services import (
    ReferenceInUseError,
    instrument_type_create,
    instrument_type_delete,
    instrument_type_update,
    sector_create,
    sector_delete,
    sector_update,
)


class SectorOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Sector
        fields = ["id", "name", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class SectorInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to create or replace (PUT) a sector; PATCH sends any subset."""

    name = serializers.CharField(max_length=100, help_text="Unique regardless of case.")
    is_active = serializers.BooleanField(default=True)


class InstrumentTypeOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = InstrumentType
        fields = ["id", "code", "name", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class InstrumentTypeInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a client sends to create or replace (PUT) an instrument type; PATCH sends any subset."""

    code = serializers.CharField(max_length=16, help_text="Stored upper case; unique regardless of case (EQ, ETF).")
    name = serializers.CharField(max_length=100)
    is_active = serializers.BooleanField(default=True)


LIST_DESCRIPTION = (
    "`limit` defaults to 100 and may be at most 1000; larger values, a negative `offset` and malformed "
    "filter values answer 400."
)


def _list_parameters(search: str) -> list[OpenApiParameter]:
    return [
        OpenApiParameter("search", OpenApiTypes.STR, description=search),
        OpenApiParameter("is_active", OpenApiTypes.BOOL, description="true or false."),
    ]


def _force(description: str) -> OpenApiParameter:
    return OpenApiParameter("force", OpenApiTypes.BOOL, description=description)


def _crud_schema(noun: str, output, input_serializer, *, search: str, destroy: dict):
    return extend_schema_view(
        list=extend_schema(
            summary=f"List {noun}s",
            description=LIST_DESCRIPTION,
            parameters=_list_parameters(search),
            responses={200: output(many=True), **error_responses(400, 401)},
        ),
        retrieve=extend_schema(summary=f"Get {_a(noun)}", responses={200: output, **error_responses(401, 404)}),
        create=extend_schema(
            summary=f"Create {_a(noun)} (admin)",
            request=input_serializer,
            responses={201: output, **error_responses(400, 401, 403)},
        ),
        update=extend_schema(
            summary=f"Replace {_a(noun)} (admin)",
            request=input_serializer,
            responses={200: output, **error_responses(400, 401, 403, 404)},
        ),
        partial_update=extend_schema(
            summary=f"Change some fields of {_a(noun)} (admin)",
            request=input_serializer(partial=True),
            responses={200: output, **error_responses(400, 401, 403, 404)},
        ),
        destroy=extend_schema(summary=f"Delete {_a(noun)} (admin)", **destroy),
    )


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


class _ReferenceViewSet(viewsets.GenericViewSet):
    """CRUD shared by the two reference resources; subclasses name their serializers and services."""

    pagination_class = LimitOffsetPagination
    lookup_value_regex = "[0-9]+"
    input_serializer_class: type[serializers.Serializer]

    def list_rows(self, request: Request):
        raise NotImplementedError

    def create_row(self, data: dict):
        raise NotImplementedError

    def update_row(self, row, data: dict):
        raise NotImplementedError

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.list_rows(request))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        serializer = self.input_serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = self.create_row(serializer.validated_data)
        return Response(self.get_serializer(row).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=False)

    def partial_update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        row = self.get_object()
        serializer = self.input_serializer_class(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return Response(self.get_serializer(self.update_row(row, serializer.validated_data)).data)


@_crud_schema(
    "sector",
    SectorOutputSerializer,
    SectorInputSerializer,
    search="Text anywhere in the name, any case.",
    destroy={
        "description": "A sector that instruments are in is not deleted: the answer is 409, unless `?force=true`, "
        "which deletes it and leaves those instruments without a sector (204).",
        "parameters": [_force("Delete even when instruments are in the sector; they are left without one.")],
        "responses": {204: OpenApiResponse(description="Deleted."), **error_responses(400, 401, 403, 404, 409)},
    },
)
class SectorViewSet(_ReferenceViewSet):
    """Sectors: everyone signed in reads, admins write."""

    serializer_class = SectorOutputSerializer
    input_serializer_class = SectorInputSerializer

    def get_queryset(self):
        return sector_list()

    def list_rows(self, request: Request):
        return sector_list(filters=request.query_params)

    def create_row(self, data: dict) -> Sector:
        return sector_create(**data)

    def update_row(self, row: Sector, data: dict) -> Sector:
        return sector_update(sector=row, data=data)

    def destroy(self, request: Request, pk: str) -> Response:
        sector = self.get_object()
        try:
            sector_delete(sector=sector, force=query_flag(request, "force"))
        except ReferenceInUseError as exc:
            raise Conflict(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


@_crud_schema(
    "instrument type",
    InstrumentTypeOutputSerializer,
    InstrumentTypeInputSerializer,
    search="Text anywhere in the code or the name, any case.",
    destroy={
        "description": "Every instrument needs a type, so a type that instruments have is never deleted: the answer "
        "is 409, unless `?force=true`, which deactivates it (kept for its instruments) and answers 200 with it.",
        "parameters": [_force("When instruments have this type, deactivate it (200) instead of answering 409.")],
        "responses": {
            200: OpenApiResponse(InstrumentTypeOutputSerializer, description="Deactivated (force=true, in use)."),
            204: OpenApiResponse(description="Deleted."),
            **error_responses(400, 401, 403, 404, 409),
        },
    },
)
class InstrumentTypeViewSet(_ReferenceViewSet):
    """Instrument types: everyone signed in reads, admins write."""

    serializer_class = InstrumentTypeOutputSerializer
    input_serializer_class = InstrumentTypeInputSerializer

    def get_queryset(self):
        return instrument_type_list()

    def list_rows(self, request: Request):
        return instrument_type_list(filters=request.query_params)

    def create_row(self, data: dict) -> InstrumentType:
        return instrument_type_create(**data)

    def update_row(self, row: InstrumentType, data: dict) -> InstrumentType:
        return instrument_type_update(instrument_type=row, data=data)

    def destroy(self, request: Request, pk: str) -> Response:
        instrument_type = self.get_object()
        try:
            kept = instrument_type_delete(instrument_type=instrument_type, force=query_flag(request, "force"))
        except ReferenceInUseError as exc:
            raise Conflict(str(exc)) from exc
        if kept is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.get_serializer(kept).data)
