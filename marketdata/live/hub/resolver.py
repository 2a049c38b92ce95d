"""Channel symbols (``AAPL``, ``NSE:RELIANCE``) to the instruments a subscription needs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from channels.db import database_sync_to_async


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
                found = await database_sync_to_async(resolve_symbols)(fetch)
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
    """Each name resolved to an instrument or a ``ResolveError`` (sync: database queries)."""
    from instruments.symbols import AmbiguousSymbolError, InstrumentNotFoundError, instrument_for_symbol

    out: dict[str, LiveInstrument | ResolveError] = {}
    for name in names:
        try:
            instrument = instrument_for_symbol(symbol=name)
        except AmbiguousSymbolError as exc:
            out[name] = ResolveError(
                "ambiguous_symbol",
                f"'{name}' is listed on several exchanges ({', '.join(exc.exchanges)}); "
                f"subscribe to '{exc.exchanges[0]}:{exc.symbol}' instead.",
            )
        except InstrumentNotFoundError:
            out[name] = ResolveError("unknown_symbol", f"Unknown symbol '{name}'.")
        else:
            out[name] = LiveInstrument(instrument.pk, instrument.symbol, instrument.exchange.code)
    return out
