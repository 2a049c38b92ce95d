"""The thin CRUD base of the providers and mappings viewsets, and its OpenAPI description."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.schema import error_responses


def _crud_schema(noun: str, plural: str, output, request, *, read: tuple[int, ...], parameters=None):
    """extend_schema_view arguments for a plain CRUD viewset; ``read`` are the error codes of reads."""
    params = {"parameters": parameters} if parameters else {}
    write_errors = (400, 401, 403, 404)
    return {
        "list": extend_schema(
            summary=f"List {plural}", responses={200: output(many=True), **error_responses(*read)}, **params
        ),
        "retrieve": extend_schema(
            summary=f"Get a {noun}", responses={200: output, **error_responses(*read, 404)}, **params
        ),
        "create": extend_schema(
            summary=f"Create a {noun} (admin)",
            request=request,
            responses={201: output, **error_responses(*write_errors)},
            **params,
        ),
        "update": extend_schema(
            summary=f"Replace a {noun} (admin)",
            request=request,
            responses={200: output, **error_responses(*write_errors)},
            **params,
        ),
        "partial_update": extend_schema(
            summary=f"Change some fields of a {noun} (admin)",
            request=request(partial=True),
            responses={200: output, **error_responses(*write_errors)},
            **params,
        ),
        "destroy": extend_schema(
            summary=f"Delete a {noun} (admin)",
            responses={204: None, **error_responses(401, 403, 404)},
            **params,
        ),
    }


class _CrudViewSet(viewsets.GenericViewSet):
    """Thin CRUD: input serializer in, service call, output serializer out.

    Subclasses name their serializers and implement ``perform_create_service`` and
    ``perform_update_service`` / ``perform_delete_service``.
    """

    input_serializer_class: type[serializers.Serializer]
    lookup_value_regex = "[0-9]+"

    def list(self, request: Request, **kwargs) -> Response:
        queryset = self.get_queryset()
        page = self.paginate_queryset(queryset)
        if page is None:
            return Response(self.get_serializer(queryset, many=True).data)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request: Request, **kwargs) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request: Request, **kwargs) -> Response:
        serializer = self.input_serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        obj = self.perform_create_service(serializer.validated_data)
        return Response(self.get_serializer(obj).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, **kwargs) -> Response:
        return self._update(request, partial=False)

    def partial_update(self, request: Request, **kwargs) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        obj = self.get_object()
        serializer = self.input_serializer_class(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        obj = self.perform_update_service(obj, serializer.validated_data)
        return Response(self.get_serializer(obj).data)

    def destroy(self, request: Request, **kwargs) -> Response:
        self.perform_delete_service(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def perform_create_service(self, data: dict):
        raise NotImplementedError

    def perform_update_service(self, obj, data: dict):
        raise NotImplementedError

    def perform_delete_service(self, obj) -> None:
        raise NotImplementedError
