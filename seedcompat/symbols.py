"""One symbol string per instrument, as the seed front end needs it.

The front end names an instrument everywhere by a bare symbol (page URLs, ``by-symbol``,
market data paths, the WebSocket ``channel``), but our symbols are unique only per exchange.
The rule:

* **Writing** (``compat_symbol``): an instrument is shown as its plain symbol (``AAPL``) when
  that string names it alone, else as ``SYMBOL.EXCHANGECODE`` (``XYZ.NSE``), the seed's suffix
  convention. "Alone" means: no *other* visible instrument (``is_active`` on an active
  exchange) has the same symbol; an instrument that is itself not visible also needs no other
  instrument at all with that symbol (so the admin, who sees hidden ones, never meets a tie).
  The result changes only when a listing with the same symbol appears or disappears.
* **Reading** (``instrument_for_compat_symbol``) accepts ``AAPL``, ``XYZ.NSE`` and ``NSE:XYZ``
  (case-insensitive, exact case preferred), in this order:

  1. ``EXCHANGE:SYMBOL`` when the prefix is an exchange code listing that symbol
     (as ``instruments.symbols``; symbols may themselves hold a ``:``);
  2. the whole string as a symbol: visible instruments first, hidden ones only when asked
     (``include_inactive``, for admins); one match wins, several raise ``AmbiguousSymbolError``;
  3. ``SYMBOL.EXCHANGE`` when the part after the last ``.`` is an exchange code listing the
     rest (an exact symbol such as ``BRK.B`` wins over this split).

  Otherwise ``InstrumentNotFoundError``. Both errors are those of ``instruments.symbols``, so
  callers handle one pair of exceptions.

``compat_symbols`` and ``instruments_for_compat_symbols`` do the same for lists in one query (a
second one for case-insensitive matches). Everything here is read-only and uncached (hidden instruments count, which the
shared cache of ``instruments.symbols`` does not hold).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models.functions import Upper

from instruments.models import Instrument
from instruments.symbols import AmbiguousSymbolError, InstrumentNotFoundError

__all__ = [
    "AmbiguousSymbolError",
    "InstrumentNotFoundError",
    "compat_symbol",
    "compat_symbols",
    "instrument_for_compat_symbol",
    "instruments_for_compat_symbols",
    "is_visible",
]


def is_visible(instrument: Instrument) -> bool:
    """Listed for everyone: the instrument and its exchange are active."""
    return bool(instrument.is_active and instrument.exchange.is_active)


def _suffixed(instrument: Instrument, code: str) -> str:
    return f"{instrument.symbol}.{code}"


def compat_symbols(instruments: Iterable[Instrument]) -> dict[int, str]:
    """``{instrument id: compat symbol}`` for many instruments, in one query."""
    items = list(instruments)
    if not items:
        return {}
    rows = Instrument.objects.filter(symbol__in={i.symbol for i in items}).values_list(
        "id", "symbol", "is_active", "exchange__is_active", "exchange_id", "exchange__code"
    )
    by_symbol: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    codes: dict[int, str] = {}
    for pk, symbol, active, exchange_active, exchange_id, code in rows:
        by_symbol[symbol].append((pk, bool(active and exchange_active)))
        codes[exchange_id] = code
    out: dict[int, str] = {}
    for instrument in items:
        rows_here = by_symbol.get(instrument.symbol, [])
        own = [visible for pk, visible in rows_here if pk == instrument.pk]
        others = [visible for pk, visible in rows_here if pk != instrument.pk]
        own_visible = own[0] if own else is_visible(instrument)
        clash = any(others) if own_visible else bool(others)
        if clash:
            code = codes.get(instrument.exchange_id) or instrument.exchange.code
            out[instrument.pk] = _suffixed(instrument, code)
        else:
            out[instrument.pk] = instrument.symbol
    return out


def compat_symbol(instrument: Instrument) -> str:
    """The string the seed front end uses for ``instrument`` (see the module docstring)."""
    return compat_symbols([instrument])[instrument.pk]


def _candidates(groups: list[set[str]]) -> dict[str, list[Instrument]]:
    """Instruments whose symbol is one of the candidate strings, keyed by upper-case symbol.

    ``groups`` holds each input's candidate strings. Exact matches come first (the symbol
    index); a case-insensitive pass runs only for inputs none of whose candidates matched.
    """
    base = Instrument.objects.select_related("exchange")
    found: dict[str, list[Instrument]] = defaultdict(list)
    for instrument in base.filter(symbol__in=set().union(*groups)):
        found[instrument.symbol.upper()].append(instrument)
    exact = {i.symbol for matches in found.values() for i in matches}
    missing = {s.upper() for group in groups if not group & exact for s in group}
    if missing:
        for instrument in base.annotate(_usym=Upper("symbol")).filter(_usym__in=missing):
            if instrument not in found[instrument.symbol.upper()]:
                found[instrument.symbol.upper()].append(instrument)
    return found


def _variants(text: str) -> set[str]:
    """The symbol strings ``text`` may stand for: itself, after ``EXCHANGE:``, before ``.EXCHANGE``."""
    out = {text}
    if ":" in text:
        out.add(text.split(":", 1)[1])
    if "." in text:
        out.add(text.rsplit(".", 1)[0])
    return {s for s in out if s}


def _prefer_exact(matches: list[Instrument], symbol: str) -> list[Instrument]:
    exact = [i for i in matches if i.symbol == symbol]
    return exact or matches


def _on_exchange(found: dict[str, list[Instrument]], symbol: str, code: str) -> Instrument | None:
    matches = [i for i in found.get(symbol.upper(), []) if i.exchange.code.upper() == code.upper()]
    matches = _prefer_exact(matches, symbol)
    return matches[0] if matches else None


def _resolve(text: str, found: dict[str, list[Instrument]], *, include_inactive: bool) -> Instrument:
    def allowed(instrument: Instrument) -> bool:
        return include_inactive or is_visible(instrument)

    if ":" in text:
        prefix, rest = text.split(":", 1)
        hit = _on_exchange(found, rest, prefix) if rest else None
        if hit is not None and allowed(hit):
            return hit
    whole = _prefer_exact(found.get(text.upper(), []), text)
    visible = [i for i in whole if is_visible(i)]
    pool = visible or ([i for i in whole if not is_visible(i)] if include_inactive else [])
    if len(pool) == 1:
        return pool[0]
    if len(pool) > 1:
        raise AmbiguousSymbolError(text, sorted(i.exchange.code for i in pool))
    if "." in text:
        rest, code = text.rsplit(".", 1)
        hit = _on_exchange(found, rest, code) if rest and code else None
        if hit is not None and allowed(hit):
            return hit
    raise InstrumentNotFoundError(f"Instrument not found: '{text}'.")


def _clean(symbol: str) -> str | None:
    text = (symbol or "").strip()
    if not text or "\x00" in text:  # PostgreSQL refuses a NUL in a query parameter.
        return None
    return text


def instrument_for_compat_symbol(symbol: str, *, include_inactive: bool = False) -> Instrument:
    """The instrument behind a compat symbol (``AAPL``, ``XYZ.NSE`` or ``NSE:XYZ``), exchange loaded.

    Hidden instruments (inactive, or on an inactive exchange) are found only with
    ``include_inactive``. Raises ``InstrumentNotFoundError`` or ``AmbiguousSymbolError``.
    """
    text = _clean(symbol)
    if text is None:
        raise InstrumentNotFoundError(f"Instrument not found: '{symbol}'.")
    return _resolve(text, _candidates([_variants(text)]), include_inactive=include_inactive)


def instruments_for_compat_symbols(symbols: Iterable[str], *, include_inactive: bool = False) -> dict[str, Instrument]:
    """``{symbol: instrument}`` for the symbols that resolve, in one query (two with case-insensitive matches).

    Unknown and ambiguous symbols are left out.
    """
    texts = {s: t for s in symbols if (t := _clean(s)) is not None}
    if not texts:
        return {}
    found = _candidates([_variants(t) for t in texts.values()])
    out: dict[str, Instrument] = {}
    for original, text in texts.items():
        try:
            out[original] = _resolve(text, found, include_inactive=include_inactive)
        except (InstrumentNotFoundError, AmbiguousSymbolError):
            continue
    return out
