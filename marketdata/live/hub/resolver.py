"""Channel symbols (``AAPL``, ``NSE:RELIANCE``) to the instruments a subscription needs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from core.db import db_sync_to_async


@dataclass(frozen=True, slots=True)
class LiveInstrument:
    """What a subscription needs to know about an instrument."""

    instrument_id: int
    symbol: str
    exchange: str


@dataclass(frozen=True, slots=True)
class ResolveError:
    """Why a channel's symbol could not be resolved (``code`` is the protocol's error code)."""

    code: str
    message: str


class SymbolResolver:
    """Channel symbols (``AAPL``, ``NSE:RELIANCE``) to instruments, cached for a short time.

    Subscribe storms (a thousand dashboards reconnecting at once) hit the cache; names not
    cached yet are looked up once even when many connections ask at the same moment.
    Unknown names are cached too, so a client repeating a bad name does not reach the database.
    A frame's uncached names are looked up in one query, off the shared sync thread (token
    checks run there or beside it; a flood of lookups must not hold them up).
    """

    def __init__(self, *, ttl_s: float, max_entries: int = 20_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, LiveInstrument | ResolveError]] = {}
        self._inflight: dict[str, asyncio.Future] = {}

    async def resolve_many(self, names: Iterable[str]) -> dict[str, LiveInstrument | ResolveError]:
        """Resolve every name; a database failure raises (the caller reports it to the client)."""
        now = time.monotonic()
        out: dict[str, LiveInstrument | ResolveError] = {}
        waiting: dict[str, asyncio.Future] = {}
        fetch: list[str] = []
        for name in dict.fromkeys(names):
            hit = self._cache.get(name)
            if hit is not None and hit[0] > now:
                out[name] = hit[1]
            elif name in self._inflight:
                waiting[name] = self._inflight[name]
            else:
                fetch.append(name)
        if fetch:
            loop = asyncio.get_running_loop()
            futures = {name: loop.create_future() for name in fetch}
            self._inflight.update(futures)
            try:
                found = await db_sync_to_async(resolve_symbols)(fetch)
            except BaseException as exc:
                for future in futures.values():
                    future.set_exception(exc)
                    future.exception()  # retrieved here, so nobody is warned about it
                raise
            finally:
                for name in fetch:
                    self._inflight.pop(name, None)
            expires = time.monotonic() + self.ttl_s
            if len(self._cache) + len(found) > self.max_entries:
                self._cache.clear()
            for name, result in found.items():
                self._cache[name] = (expires, result)
                futures[name].set_result(result)
            out.update(found)
        for name, future in waiting.items():
            out[name] = await future
        return out


def resolve_symbols(names: list[str]) -> dict[str, LiveInstrument | ResolveError]:
    """Each name resolved to an instrument or a ``ResolveError``, in ONE query (sync).

    The rules of ``instruments.symbols.instrument_for_symbol``: ``X:Y`` is symbol ``Y`` on the
    active exchange ``X`` (code matched case-insensitively) when it lists ``Y``, else the whole
    name is a symbol; an exact symbol match wins over a case-insensitive one; a symbol listed
    on several exchanges is ambiguous. Only active instruments of active exchanges count.
    Unknown names cost no more than known ones: one query for the whole frame.
    """
    from django.db.models.functions import Upper

    from instruments.models import Instrument

    wanted: set[str] = set()
    for name in names:
        symbol = name.strip()
        if "\x00" in symbol:
            continue
        wanted.add(symbol.upper())
        _, colon, rest = symbol.partition(":")
        if colon and rest:
            wanted.add(rest.upper())
    rows: dict[str, list[tuple[int, str, str]]] = {}
    if wanted:
        found = (
            Instrument.objects.filter(is_active=True, exchange__is_active=True)
            .annotate(upper_symbol=Upper("symbol"))
            .filter(upper_symbol__in=wanted)
            .order_by("pk")
            .values_list("pk", "symbol", "exchange__code")
        )
        for pk, symbol, code in found:
            rows.setdefault(symbol.upper(), []).append((pk, symbol, code))
    return {name: _pick(name, rows) for name in names}


def _matches(symbol: str, rows: dict, exchange: str | None = None) -> list[tuple[int, str, str]]:
    """Rows of ``symbol`` (on ``exchange``, any case): the exact ones if any, else all."""
    found = [r for r in rows.get(symbol.upper(), ()) if exchange is None or r[2].upper() == exchange.upper()]
    exact = [r for r in found if r[1] == symbol]
    return exact or found


def _pick(name: str, rows: dict) -> LiveInstrument | ResolveError:
    symbol = name.strip()
    if "\x00" not in symbol:
        prefix, colon, rest = symbol.partition(":")
        if colon and rest and (on_exchange := _matches(rest, rows, prefix.strip())):
            return LiveInstrument(*on_exchange[0])
        found = _matches(symbol, rows)
        if len(found) == 1:
            return LiveInstrument(*found[0])
        if found:
            exchanges = sorted(r[2] for r in found)
            return ResolveError(
                "ambiguous_symbol",
                f"'{name}' is listed on several exchanges ({', '.join(exchanges)}); "
                f"subscribe to '{exchanges[0]}:{symbol}' instead.",
            )
    return ResolveError("unknown_symbol", f"Unknown symbol '{name}'.")
