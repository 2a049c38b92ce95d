"""REST API of watchlists: ``/watchlists/`` — each signed-in user reads and writes their own only.

Another user's list answers 404, exactly like a list that does not exist.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import watchlists
from accounts.models import Watchlist, WatchlistItem
from core.api.errors import Conflict
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin
from instruments.models import Instrument
from instruments.symbols import AmbiguousSymbolError, InstrumentNotFoundError, instrument_for_symbol

WATCHLIST_ID = OpenApiParameter("watchlist_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Watchlist id.")
INSTRUMENT_ID = OpenApiParameter(
    "instrument_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Id of the instrument on the list."
)


class WatchlistItemOutputSerializer(serializers.Serializer):
    """An instrument on a list, with what the dashboard needs to show and format it."""

    instrument_id = serializers.IntegerField(source="instrument.id")
    symbol = serializers.CharField(source="instrument.symbol")
    name = serializers.CharField(source="instrument.name")
    exchange = serializers.CharField(source="instrument.exchange.code", help_text="Exchange code.")
    timezone = serializers.CharField(source="instrument.exchange.timezone", help_text="The exchange's time zone.")
    currency = serializers.CharField(source="instrument.effective_currency", help_text="ISO 4217.")
    tick_size = serializers.DecimalField(source="instrument.tick_size", max_digits=12, decimal_places=6)
    instrument_type = serializers.CharField(source="instrument.instrument_type.code")
    is_active = serializers.BooleanField(source="instrument.is_active")
    position = serializers.IntegerField()
    added_at = serializers.DateTimeField(source="created_at")


class WatchlistOutputSerializer(serializers.Serializer):
    """A watchlist with its instruments, in list order."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    items = WatchlistItemOutputSerializer(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class WatchlistInputSerializer(StrictFieldsMixin, serializers.Serializer):
    name = serializers.CharField(max_length=100)


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1}]})
class InstrumentRefField(serializers.Field):
    """An instrument by id (``12``) or by symbol (``"AAPL"``, ``"NSE:RELIANCE"``).

    Digits alone are an id: a numeric symbol is written with its exchange (``"HKEX:0700"``).
    """

    default_error_messages = {"invalid": "Give an instrument id or a symbol such as NSE:RELIANCE."}

    def to_internal_value(self, data) -> Instrument:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        text = str(data).strip()
        if not text or "\x00" in text or len(text) > 100:
            self.fail("invalid")
        if text.isdigit():
            number = int(text)
            found = (
                Instrument.objects.select_related("exchange").filter(pk=number).first()
                if 0 < number <= watchlists.MAX_ID
                else None
            )
            if found is None:
                raise serializers.ValidationError(f"No instrument with id {number}.")
            return found
        try:
            return instrument_for_symbol(symbol=text)
        except (AmbiguousSymbolError, InstrumentNotFoundError) as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: Instrument) -> int:
        return value.pk


class WatchlistItemInputSerializer(StrictFieldsMixin, serializers.Serializer):
    instrument = InstrumentRefField()


def _own_watchlist(request: Request, watchlist_id: str) -> Watchlist:
    try:
        return watchlists.watchlist_get(user=request.user, watchlist_id=int(watchlist_id))
    except Watchlist.DoesNotExist:
        raise NotFound("No such watchlist.") from None


def _output(watchlist_id: int, request: Request) -> dict:
    # Read back through the selector, so every answer has the same shape and ordering.
    return WatchlistOutputSerializer(watchlists.watchlist_get(user=request.user, watchlist_id=watchlist_id)).data


class WatchlistListApi(APIView):
    """The signed-in user's watchlists; a new user gets the default list on first access."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="watchlists_list",
        tags=["watchlists"],
        summary="Your watchlists",
        description="A user who has none gets the default list of the demo instruments first.",
        responses={200: WatchlistOutputSerializer(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        watchlists.watchlist_default_ensure(user=request.user)
        return Response(WatchlistOutputSerializer(watchlists.watchlist_list(user=request.user), many=True).data)

    @extend_schema(
        operation_id="watchlists_create",
        tags=["watchlists"],
        summary="Create a watchlist",
        request=WatchlistInputSerializer,
        responses={201: WatchlistOutputSerializer, **error_responses(400, 401)},
    )
    def post(self, request: Request) -> Response:
        serializer = WatchlistInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        watchlist = watchlists.watchlist_create(user=request.user, **serializer.validated_data)
        return Response(_output(watchlist.pk, request), status=status.HTTP_201_CREATED)


class WatchlistDetailApi(APIView):
    """One of the user's watchlists: read, rename, delete."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="watchlists_retrieve",
        parameters=[WATCHLIST_ID],
        tags=["watchlists"],
        summary="Get a watchlist",
        responses={200: WatchlistOutputSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, watchlist_id: str) -> Response:
        return Response(WatchlistOutputSerializer(_own_watchlist(request, watchlist_id)).data)

    @extend_schema(
        operation_id="watchlists_rename",
        parameters=[WATCHLIST_ID],
        tags=["watchlists"],
        summary="Rename a watchlist",
        request=WatchlistInputSerializer,
        responses={200: WatchlistOutputSerializer, **error_responses(400, 401, 404)},
    )
    def patch(self, request: Request, watchlist_id: str) -> Response:
        watchlist = _own_watchlist(request, watchlist_id)
        serializer = WatchlistInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        watchlists.watchlist_rename(watchlist=watchlist, **serializer.validated_data)
        return Response(_output(watchlist.pk, request))

    @extend_schema(
        operation_id="watchlists_delete",
        parameters=[WATCHLIST_ID],
        tags=["watchlists"],
        summary="Delete a watchlist",
        description="The last remaining list cannot be deleted (409).",
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(401, 404, 409)},
    )
    def delete(self, request: Request, watchlist_id: str) -> Response:
        watchlist = _own_watchlist(request, watchlist_id)
        try:
            watchlists.watchlist_delete(watchlist=watchlist)
        except watchlists.WatchlistLastError as exc:
            raise Conflict(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchlistItemListApi(APIView):
    """Add an instrument to one of the user's watchlists."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="watchlists_items_add",
        parameters=[WATCHLIST_ID],
        tags=["watchlists"],
        summary="Add an instrument to a watchlist",
        request=WatchlistItemInputSerializer,
        responses={201: WatchlistOutputSerializer, **error_responses(400, 401, 404)},
    )
    def post(self, request: Request, watchlist_id: str) -> Response:
        watchlist = _own_watchlist(request, watchlist_id)
        serializer = WatchlistItemInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        watchlists.watchlist_item_add(watchlist=watchlist, **serializer.validated_data)
        return Response(_output(watchlist.pk, request), status=status.HTTP_201_CREATED)


class WatchlistItemDetailApi(APIView):
    """Remove an instrument (by instrument id) from one of the user's watchlists."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="watchlists_items_remove",
        parameters=[WATCHLIST_ID, INSTRUMENT_ID],
        tags=["watchlists"],
        summary="Remove an instrument from a watchlist",
        responses={204: OpenApiResponse(description="Removed."), **error_responses(401, 404)},
    )
    def delete(self, request: Request, watchlist_id: str, instrument_id: str) -> Response:
        watchlist = _own_watchlist(request, watchlist_id)
        try:
            watchlists.watchlist_item_remove(watchlist=watchlist, instrument_id=int(instrument_id))
        except WatchlistItem.DoesNotExist as exc:
            raise NotFound(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
