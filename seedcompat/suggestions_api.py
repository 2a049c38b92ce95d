"""The seed's suggestions (``/suggestions/...``) over ``seedcompat.models``.

* ``SuggestionTypeInDb``: ``{id, name, description, created_at, updated_at, is_active}``.
  Everyone signed in lists and reads them (admins see inactive ones too); admins create,
  update and delete them. A name taken (any case) is a 400; deleting a type that suggestions
  use is a 409 (deactivate it instead: ``PUT`` with ``is_active: false``).
* ``SuggestionResponse``: ``{id, user_id, suggestion_type_id, title, description, status,
  created_at, updated_at, is_active, user: UserInDb, suggestion_type: SuggestionTypeInDb}``,
  answered by every suggestion route. ``status`` is ``pending`` (new), ``approved``,
  ``rejected`` or ``implemented``; other values are a 400.
* Any signed-in user creates suggestions (``user_id`` from the token, ``status`` pending) and
  reads, edits (title, description, type) and deletes their own; ``GET /suggestions/`` is all
  of them for admins and the caller's own otherwise, newest first. Only admins change
  ``status``. Someone else's suggestion is a 403 for a non-admin, as in the seed.
* Datetimes are ISO 8601 in UTC with ``Z``.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, QuerySet
from django.urls import re_path
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from core.api.errors import Conflict
from core.api.permissions import is_admin
from seedcompat.common import seed_datetime
from seedcompat.models import Suggestion, SuggestionType
from seedcompat.reference_api import ID, SeedWriteView, message
from seedcompat.serializers_users import user_in_db

# --- documents ------------------------------------------------------------------------------


def suggestion_type_in_db(kind: SuggestionType) -> dict[str, Any]:
    return {
        "id": kind.pk,
        "name": kind.name,
        "description": kind.description or None,
        "created_at": seed_datetime(kind.created_at),
        "updated_at": seed_datetime(kind.updated_at),
        "is_active": kind.is_active,
    }


def suggestion_response(suggestion: Suggestion) -> dict[str, Any]:
    return {
        "id": suggestion.pk,
        "user_id": suggestion.user_id,
        "suggestion_type_id": suggestion.suggestion_type_id,
        "title": suggestion.title,
        "description": suggestion.description,
        "status": suggestion.status,
        "created_at": seed_datetime(suggestion.created_at),
        "updated_at": seed_datetime(suggestion.updated_at),
        "is_active": suggestion.is_active,
        "user": user_in_db(suggestion.user),
        "suggestion_type": suggestion_type_in_db(suggestion.suggestion_type),
    }


# --- reads and writes -----------------------------------------------------------------------


def suggestion_type_list(*, include_inactive: bool) -> QuerySet[SuggestionType]:
    rows = SuggestionType.objects.order_by("name", "pk")
    return rows if include_inactive else rows.filter(is_active=True)


def suggestion_list(*, user: User | None) -> QuerySet[Suggestion]:
    """Suggestions newest first, with user and type loaded; only ``user``'s when given."""
    rows = Suggestion.objects.select_related("user", "suggestion_type").order_by("-created_at", "-pk")
    return rows if user is None else rows.filter(user=user)


def _save_type(kind: SuggestionType) -> SuggestionType:
    kind.name = (kind.name or "").strip()
    if not kind.name:
        raise ValidationError({"name": ["This field may not be blank."]})
    taken = f"A suggestion type named {kind.name!r} already exists (names are case-insensitive)."
    if SuggestionType.objects.filter(name__iexact=kind.name).exclude(pk=kind.pk).exists():
        raise ValidationError({"name": [taken]})
    try:
        with transaction.atomic():
            kind.save()
    except IntegrityError as exc:  # a concurrent insert of the same name
        raise ValidationError({"name": [taken]}) from exc
    return kind


def suggestion_type_delete(kind: SuggestionType) -> None:
    try:
        kind.delete()
    except ProtectedError as exc:
        count = kind.suggestions.count()
        raise Conflict(
            f"Suggestion type {kind.name!r} is used by {count} suggestion{'s' if count != 1 else ''}: it cannot "
            "be deleted while they exist. Deactivate it instead (is_active: false)."
        ) from exc


# --- input ----------------------------------------------------------------------------------


class SuggestionTypeInput(serializers.Serializer):
    """``{name, description}`` (and ``is_active`` on update); unknown keys are ignored."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class SuggestionInput(serializers.Serializer):
    """``{title, description, suggestion_type_id}`` (and ``status`` for admins, on update)."""

    title = serializers.CharField(max_length=200)
    description = serializers.CharField()
    suggestion_type_id = serializers.PrimaryKeyRelatedField(queryset=SuggestionType.objects.filter(is_active=True))
    status = serializers.ChoiceField(choices=Suggestion.Status.values, required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("status"), str):
            data = {**data, "status": data["status"].strip().lower()}
        return super().to_internal_value(data)


# --- views ----------------------------------------------------------------------------------


def _type(pk: str, *, include_inactive: bool) -> SuggestionType:
    kind = suggestion_type_list(include_inactive=include_inactive).filter(pk=pk).first()
    if kind is None:
        raise NotFound("Suggestion type not found")
    return kind


class SuggestionTypeListView(SeedWriteView):
    """``GET /suggestions/types`` (bare array by name), ``POST`` (admin)."""

    def get(self, request: Request) -> Response:
        rows = suggestion_type_list(include_inactive=is_admin(request.user))
        return Response([suggestion_type_in_db(t) for t in rows])

    def post(self, request: Request) -> Response:
        body = SuggestionTypeInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        kind = SuggestionType(
            name=data["name"], description=data.get("description") or "", is_active=data.get("is_active", True)
        )
        return Response(suggestion_type_in_db(_save_type(kind)), status=status.HTTP_201_CREATED)


class SuggestionTypeDetailView(SeedWriteView):
    """``GET``, ``PUT`` (admin), ``DELETE`` (admin) ``/suggestions/types/{id}``."""

    def get(self, request: Request, pk: str) -> Response:
        return Response(suggestion_type_in_db(_type(pk, include_inactive=is_admin(request.user))))

    def put(self, request: Request, pk: str) -> Response:
        kind = _type(pk, include_inactive=True)
        body = SuggestionTypeInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        for name, value in body.validated_data.items():
            setattr(kind, name, value if name != "description" else (value or ""))
        return Response(suggestion_type_in_db(_save_type(kind)))

    def delete(self, request: Request, pk: str) -> Response:
        suggestion_type_delete(_type(pk, include_inactive=True))
        return message("Suggestion type deleted successfully")


class SuggestionListView(SeedWriteView):
    """``GET /suggestions/`` (all for admins, else the caller's), ``POST /suggestions/`` (anyone signed in)."""

    admin_methods = frozenset()

    def get(self, request: Request) -> Response:
        rows = suggestion_list(user=None if is_admin(request.user) else request.user)
        return Response([suggestion_response(s) for s in rows])

    def post(self, request: Request) -> Response:
        body = SuggestionInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if "status" in data and data["status"] != Suggestion.Status.PENDING and not is_admin(request.user):
            raise PermissionDenied("Only an admin may set the status of a suggestion.")
        suggestion = Suggestion.objects.create(
            user=request.user,
            suggestion_type=data["suggestion_type_id"],
            title=data["title"].strip(),
            description=data["description"],
            status=data.get("status", Suggestion.Status.PENDING),
        )
        return Response(suggestion_response(suggestion), status=status.HTTP_201_CREATED)


class MySuggestionsView(SeedWriteView):
    """``GET /suggestions/my``: the caller's own, newest first."""

    def get(self, request: Request) -> Response:
        return Response([suggestion_response(s) for s in suggestion_list(user=request.user)])


class SuggestionDetailView(SeedWriteView):
    """``GET``, ``PUT``, ``DELETE`` ``/suggestions/{id}``: the owner or an admin; only admins change ``status``."""

    admin_methods = frozenset()

    def _get(self, request: Request, pk: str) -> Suggestion:
        suggestion = suggestion_list(user=None).filter(pk=pk).first()
        if suggestion is None:
            raise NotFound("Suggestion not found")
        if suggestion.user_id != request.user.pk and not is_admin(request.user):
            raise PermissionDenied("Not authorized to access this suggestion")
        return suggestion

    def get(self, request: Request, pk: str) -> Response:
        return Response(suggestion_response(self._get(request, pk)))

    def put(self, request: Request, pk: str) -> Response:
        suggestion = self._get(request, pk)
        body = SuggestionInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if "status" in data and data["status"] != suggestion.status and not is_admin(request.user):
            raise PermissionDenied("Only an admin may change the status of a suggestion.")
        if "suggestion_type_id" in data:
            suggestion.suggestion_type = data.pop("suggestion_type_id")
        for name, value in data.items():
            setattr(suggestion, name, value.strip() if name == "title" else value)
        suggestion.save()
        return Response(suggestion_response(suggestion))

    def delete(self, request: Request, pk: str) -> Response:
        self._get(request, pk).delete()
        return message("Suggestion deleted successfully")


urlpatterns = [
    re_path(r"^suggestions/types/?$", SuggestionTypeListView.as_view(), name="seed-suggestion-type-list"),
    re_path(rf"^suggestions/types/{ID}/?$", SuggestionTypeDetailView.as_view(), name="seed-suggestion-type-detail"),
    re_path(r"^suggestions/my/?$", MySuggestionsView.as_view(), name="seed-suggestion-mine"),
    re_path(r"^suggestions/?$", SuggestionListView.as_view(), name="seed-suggestion-list"),
    re_path(rf"^suggestions/{ID}/?$", SuggestionDetailView.as_view(), name="seed-suggestion-detail"),
]
