"""``GET /marketdata/quote?symbols=AAPL,NSE:RELIANCE``: the latest quotes from the tick store.

Each quote has the fields of the WebSocket ``data`` message (without ``message_type``).
Answers 200 ``{"quotes": [...], "errors": [...]}`` when at least one symbol names an
instrument; ``errors`` lists the symbols that are unknown (``unknown_symbol``), listed on
several exchanges (``ambiguous_symbol``) or have no live quote yet (``no_quote``). When no
symbol names an instrument the answer is 404. At most ``MAX_SYMBOLS`` symbols per request.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import error_responses
from marketdata.live.hub import LiveInstrument, ResolveError, resolve_symbols
from marketdata.live.protocol import quote_payload
from marketdata.live.store.sync import latest_quotes

MAX_SYMBOLS = 100
MAX_SYMBOL_CHARS = 100


def _symbols(raw: str | None) -> list[str]:
    names = list(dict.fromkeys(s.strip() for s in (raw or "").split(",") if s.strip()))
    if not names:
        raise ValidationError({"symbols": ["Give one or more comma-separated symbols, e.g. AAPL,NSE:RELIANCE."]})
    if len(names) > MAX_SYMBOLS:
        raise ValidationError({"symbols": [f"At most {MAX_SYMBOLS} symbols per request (got {len(names)})."]})
    if any(len(name) > MAX_SYMBOL_CHARS for name in names):
        raise ValidationError({"symbols": [f"A symbol has at most {MAX_SYMBOL_CHARS} characters."]})
    return names


_QUOTE_FIELDS = {
    "symbol": serializers.CharField(),
    "exchange": serializers.CharField(),
    "timestamp": serializers.DateTimeField(help_text="Time of the last update, UTC."),
    "open": serializers.FloatField(),
    "high": serializers.FloatField(),
    "low": serializers.FloatField(),
    "close": serializers.FloatField(help_text="Last price."),
    "volume": serializers.IntegerField(help_text="Session volume."),
    "previous_close": serializers.FloatField(allow_null=True),
    "adj_close": serializers.FloatField(allow_null=True),
    "delivery_percentage": serializers.FloatField(allow_null=True),
    "change": serializers.FloatField(allow_null=True),
    "change_percent": serializers.FloatField(allow_null=True),
    "bid": serializers.FloatField(allow_null=True),
    "ask": serializers.FloatField(allow_null=True),
    "seq": serializers.IntegerField(help_text="Grows by one per update of the instrument."),
}


class LatestQuoteApi(APIView):
    """The latest quote of each requested symbol."""

    @extend_schema(
        operation_id="marketdata_quote",
        summary="Latest quotes",
        description=__doc__,
        parameters=[
            OpenApiParameter(
                "symbols",
                OpenApiTypes.STR,
                required=True,
                description=f"Comma-separated symbols (AAPL, NSE:RELIANCE), at most {MAX_SYMBOLS}.",
            )
        ],
        responses={
            200: inline_serializer(
                "LatestQuotes",
                {
                    "quotes": inline_serializer("LatestQuote", _QUOTE_FIELDS, many=True),
                    "errors": inline_serializer(
                        "LatestQuoteError",
                        {
                            "symbol": serializers.CharField(),
                            "code": serializers.ChoiceField(["unknown_symbol", "ambiguous_symbol", "no_quote"]),
                            "message": serializers.CharField(),
                        },
                        many=True,
                    ),
                },
            ),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request):
        names = _symbols(request.query_params.get("symbols"))
        resolved = resolve_symbols(names)
        errors = []
        found: dict[str, LiveInstrument] = {}
        for name in names:
            result = resolved[name]
            if isinstance(result, ResolveError):
                errors.append({"symbol": name, "code": result.code, "message": result.message})
            else:
                found[name] = result
        if not found:
            raise NotFound("None of the symbols is known: " + "; ".join(e["message"] for e in errors))
        quotes = latest_quotes(list(dict.fromkeys(i.instrument_id for i in found.values())))
        out, seen = [], set()
        for name, instrument in found.items():
            quote = quotes.get(instrument.instrument_id)
            if quote is None:
                errors.append({"symbol": name, "code": "no_quote", "message": f"No live quote for {name} yet."})
            elif instrument.instrument_id not in seen:
                seen.add(instrument.instrument_id)
                payload = quote_payload(quote, instrument.symbol, instrument.exchange)
                del payload["message_type"]
                out.append(payload)
        return Response({"quotes": out, "errors": errors})
