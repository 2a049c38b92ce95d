"""Server-rendered pages: the live dashboard, an instrument's page and the admins' provider panel.

The pages render the first view of the data and hand the rest to plain JavaScript modules in
``static/js`` that talk to the REST API and ``/ws`` with the session cookie.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.watchlist_api import WatchlistOutputSerializer
from accounts.watchlists import watchlist_default_ensure, watchlist_list
from core.api.permissions import is_admin
from ingestion.selectors import provider_list
from instruments.symbols import AmbiguousSymbolError, InstrumentNotFoundError, instrument_for_symbol


def _instrument_context(instrument) -> dict:
    """What the chart and the quote formatting need to know about an instrument."""
    return {
        "instrument_id": instrument.pk,
        "symbol": instrument.symbol,
        "name": instrument.name,
        "exchange": instrument.exchange.code,
        "timezone": instrument.exchange.timezone,
        "currency": instrument.effective_currency,
        "tick_size": str(instrument.tick_size),
    }


@login_required
def live_dashboard(request: HttpRequest) -> HttpResponse:
    """``/live/``: the user's watchlists with live quotes and a chart of the selected instrument."""
    watchlist_default_ensure(user=request.user)
    watchlists = WatchlistOutputSerializer(watchlist_list(user=request.user), many=True).data
    return render(request, "live/dashboard.html", {"watchlists": watchlists})


@login_required
def instrument_page(request: HttpRequest, exchange: str, symbol: str) -> HttpResponse:
    """``/instruments/<exchange>/<symbol>/``: details, provider mappings, latest quote, daily chart."""
    try:
        instrument = instrument_for_symbol(symbol=symbol, exchange=exchange)
    except (InstrumentNotFoundError, AmbiguousSymbolError) as exc:
        return render(request, "live/not_found.html", {"message": str(exc)}, status=404)
    mappings = instrument.provider_mappings.select_related("provider").order_by("provider__code")
    return render(
        request,
        "live/instrument.html",
        {"instrument": instrument, "mappings": mappings, "chart_instrument": _instrument_context(instrument)},
    )


@login_required
def provider_panel(request: HttpRequest) -> HttpResponse:
    """``/live/providers/``: each provider's live state with start/stop buttons (admins only)."""
    if not is_admin(request.user):
        return render(request, "live/forbidden.html", status=403)
    providers = [
        {"id": p.pk, "code": p.code, "name": p.name, "kind": p.get_kind_display(), "is_active": p.is_active}
        for p in provider_list()
    ]
    return render(request, "live/providers.html", {"providers": providers})
