"""``GET /marketdata/snapshot?exchange=NSE[&watchlist=ID]``: every latest quote of an exchange or watchlist.

The latest quote of each streamed instrument of the exchange (or of each instrument of one of
the caller's own watchlists), read from the tick store in one round trip, sorted server-side
for gainers and losers: ``?sort=change_percent&order=desc&limit=20``. Each result has the
fields of ``GET /marketdata/quote``. Instruments without a live quote are left out; ``total``
counts the quotes found before ``limit``, ``count`` the ones returned.

- ``exchange`` (a code, any case) or ``watchlist`` (an id), or both (the watchlist's
  instruments on that exchange). Unknown or inactive exchange, or a watchlist that is not the
  caller's: 404.
- ``sort``: ``change_percent``, ``change``, ``volume`` or ``symbol`` (default). Quotes without a
  value (no previous close, so no change) go last in either order; ties go by symbol.
- ``order``: ``asc`` or ``desc``; default ``asc`` for ``symbol``, ``desc`` otherwise.
- ``limit``: 1..500, default 500. Any other query parameter is a 400 naming it.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import error_responses
from marketdata.api.live import _QUOTE_FIELDS
from marketdata.selectors import (
    SNAPSHOT_MAX_LIMIT,
    SNAPSHOT_ORDERS,
    SNAPSHOT_SORTS,
    SnapshotNotFoundError,
    market_snapshot,
)

# Largest PostgreSQL bigint: a larger id cannot exist.
_MAX_ID = 2**63 - 1


def _choice_error(name: str, choices) -> dict[str, str]:
    return {"invalid_choice": f'"{{input}}" is not a valid {name}; use one of: {", ".join(choices)}.'}


class SnapshotQuerySerializer(serializers.Serializer):
    """The snapshot's query string."""

    exchange = serializers.CharField(max_length=20, required=False, allow_blank=True)
    watchlist = serializers.IntegerField(min_value=1, max_value=_MAX_ID, required=False)
    sort = serializers.ChoiceField(
        choices=SNAPSHOT_SORTS, default="symbol", error_messages=_choice_error("sort", SNAPSHOT_SORTS)
    )
    order = serializers.ChoiceField(
        choices=SNAPSHOT_ORDERS, required=False, error_messages=_choice_error("order", SNAPSHOT_ORDERS)
    )
    limit = serializers.IntegerField(min_value=1, max_value=SNAPSHOT_MAX_LIMIT, default=SNAPSHOT_MAX_LIMIT)

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})
        if not attrs.get("exchange") and attrs.get("watchlist") is None:
            raise ValidationError({"exchange": ["Give an exchange code, a watchlist id, or both."]})
        attrs.setdefault("order", "asc" if attrs["sort"] == "symbol" else "desc")
        return attrs


class MarketSnapshotApi(APIView):
    """The latest quotes of an exchange's streamed instruments, or of a watchlist."""

    @extend_schema(
        operation_id="marketdata_snapshot",
        summary="Market snapshot: latest quotes of an exchange or watchlist",
        description=__doc__,
        parameters=[
            OpenApiParameter("exchange", OpenApiTypes.STR, description="Exchange code, e.g. `NSE`."),
            OpenApiParameter("watchlist", {"type": "integer", "minimum": 1}, description="One of your watchlists."),
            OpenApiParameter("sort", OpenApiTypes.STR, enum=list(SNAPSHOT_SORTS), default="symbol"),
            OpenApiParameter(
                "order",
                OpenApiTypes.STR,
                enum=list(SNAPSHOT_ORDERS),
                description="Default `asc` for `symbol`, `desc` for the others.",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": SNAPSHOT_MAX_LIMIT, "default": SNAPSHOT_MAX_LIMIT},
                description="At most this many quotes, after sorting.",
            ),
        ],
        responses={
            200: inline_serializer(
                "MarketSnapshot",
                {
                    "exchange": serializers.CharField(allow_null=True, help_text="Null for a watchlist alone."),
                    "as_of": serializers.DateTimeField(help_text="When the quotes were read, UTC."),
                    "total": serializers.IntegerField(help_text="Quotes found, before limit."),
                    "count": serializers.IntegerField(help_text="Quotes in results."),
                    "results": inline_serializer("SnapshotQuote", _QUOTE_FIELDS, many=True),
                },
            ),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request):
        query = SnapshotQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        try:
            snapshot = market_snapshot(
                user=request.user,
                exchange_code=data.get("exchange") or None,
                watchlist_id=data.get("watchlist"),
                sort=data["sort"],
                order=data["order"],
                limit=data["limit"],
            )
        except SnapshotNotFoundError as exc:
            raise NotFound(str(exc)) from None
        return Response(
            {
                "exchange": snapshot.exchange,
                "as_of": snapshot.as_of.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "total": snapshot.total,
                "count": len(snapshot.results),
                "results": snapshot.results,
            }
        )
