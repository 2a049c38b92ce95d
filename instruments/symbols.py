"""Instrument lookup by symbol (``AAPL``, ``NASDAQ:AAPL``), cached briefly, and the exchange's time zone.

Reference data, so it lives here; the history API, the live feed's symbol resolver and the
watchlists all resolve symbols through it.
"""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from exchanges.models import Exchange

from .models import Instrument


class AmbiguousSymbolError(Exception):
    """A symbol listed on several exchanges was asked for without naming the exchange."""

    def __init__(self, symbol: str, exchanges: list[str]) -> None:
        self.symbol = symbol
        self.exchanges = exchanges
        super().__init__(
            f"Symbol '{symbol}' is listed on several exchanges ({', '.join(exchanges)}); "
            f"pass exchange= or write it as '{exchanges[0]}:{symbol}'."
        )


class InstrumentNotFoundError(Exception):
    """No active instrument matches the symbol (on the given exchange)."""


def _exchange_code(exchange: str) -> str | None:
    """The stored code of an active exchange, matched case-insensitively, or None."""
    return Exchange.objects.filter(code__iexact=exchange.strip(), is_active=True).values_list("code", flat=True).first()


class _InstrumentCache:
    """Resolved (symbol, exchange) -> Instrument for a few seconds, per process.

    The history endpoints resolve the same few symbols on every request; the two lookup
    queries cost more than reading the bars (PostgreSQL spends most of them planning the
    join). Only successful resolutions are kept, so a new listing is seen at once; any save
    or delete of an instrument or exchange in this process empties the cache, and other
    processes see such a change within ``HISTORY_INSTRUMENT_CACHE_S`` (as the live feed's
    ``WS_SYMBOL_CACHE_TTL_S``). ``0`` turns it off. Cached instruments are shared: read-only.
    """

    max_entries = 10_000

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, Instrument]] = {}

    def get(self, key: tuple[str, str]) -> Instrument | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[str, str], instrument: Instrument, ttl_s: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + ttl_s, instrument)

    def clear(self, **_signal_kwargs) -> None:
        self._entries.clear()


_instrument_cache = _InstrumentCache()
for _model in ("instruments.Instrument", "exchanges.Exchange"):
    post_save.connect(_instrument_cache.clear, sender=_model, dispatch_uid=f"history-instrument-cache-{_model}")
    post_delete.connect(_instrument_cache.clear, sender=_model, dispatch_uid=f"history-instrument-cache-d-{_model}")


def instrument_for_symbol(*, symbol: str, exchange: str | None = None) -> Instrument:
    """The active instrument behind ``symbol`` (``AAPL`` or ``NASDAQ:AAPL``) on ``exchange`` (a code).

    Symbols may themselves contain ``:``, so ``X:Y`` is only split when ``X`` is an exchange
    code. An exact symbol match wins over a case-insensitive one. Raises
    ``InstrumentNotFoundError`` (unknown symbol or exchange) or ``AmbiguousSymbolError`` (listed
    on several exchanges and none named). Resolutions are cached briefly (``_InstrumentCache``).
    """
    ttl_s = float(getattr(settings, "HISTORY_INSTRUMENT_CACHE_S", 30.0))
    key = (symbol, exchange or "")
    if ttl_s > 0 and (hit := _instrument_cache.get(key)) is not None:
        return hit
    instrument = _resolve_instrument(symbol=symbol, exchange=exchange)
    if ttl_s > 0:
        _instrument_cache.put(key, instrument, ttl_s)
    return instrument


def instrument_cached(*, symbol: str, exchange: str | None = None) -> Instrument | None:
    """What ``instrument_for_symbol`` would answer from its cache right now, or None (no query)."""
    if float(getattr(settings, "HISTORY_INSTRUMENT_CACHE_S", 30.0)) <= 0:
        return None
    return _instrument_cache.get((symbol, exchange or ""))


def _resolve_instrument(*, symbol: str, exchange: str | None) -> Instrument:
    symbol = symbol.strip()
    exchange = (exchange or "").strip() or None
    if "\x00" in symbol or "\x00" in (exchange or ""):
        # No symbol holds a NUL, and PostgreSQL refuses one in a query parameter.
        raise InstrumentNotFoundError(f"Unknown symbol {symbol!r}.")
    if exchange is None and ":" in symbol:
        prefix, rest = symbol.split(":", 1)
        code = _exchange_code(prefix)
        if code is not None and rest:
            found = _instruments(symbol=rest, exchange_code=code)
            if found:
                return found[0]
    if exchange is not None:
        code = _exchange_code(exchange)
        if code is None:
            raise InstrumentNotFoundError(f"Unknown exchange '{exchange}'.")
        if symbol.upper().startswith(code.upper() + ":"):
            symbol = symbol[len(code) + 1 :]
        found = _instruments(symbol=symbol, exchange_code=code)
        if not found:
            raise InstrumentNotFoundError(f"Unknown symbol '{symbol}' on {code}.")
        return found[0]
    found = _instruments(symbol=symbol, exchange_code=None)
    if not found:
        raise InstrumentNotFoundError(f"Unknown symbol '{symbol}'.")
    if len(found) > 1:
        raise AmbiguousSymbolError(symbol, sorted(i.exchange.code for i in found))
    return found[0]


def _instruments(*, symbol: str, exchange_code: str | None) -> list[Instrument]:
    """Active instruments with this symbol: exact matches, else case-insensitive ones."""
    base = Instrument.objects.filter(is_active=True, exchange__is_active=True).select_related("exchange")
    if exchange_code is not None:
        base = base.filter(exchange__code=exchange_code)
    found = list(base.filter(symbol=symbol)[:20])
    return found or list(base.filter(symbol__iexact=symbol)[:20])


def exchange_zone(exchange: Exchange) -> ZoneInfo:
    """The exchange's time zone; UTC if the stored name is not a known zone."""
    try:
        return ZoneInfo(exchange.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
