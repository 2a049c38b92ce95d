"""The history endpoints' fast route: ``GET /marketdata/intraday`` and ``/marketdata/daily`` in
front of Django, as a small async ASGI app (``marketapp/asgi.py`` puts it there).

Django's per-request cost (its ASGI handler hands each request to a new thread and crosses
back and forth around every middleware) was more than the whole raw-psycopg baseline request
(README, Performance). This route answers the common case itself, in the event loop: the same
JWT checks, the same query validation, the same SQL on an async psycopg pool, the same orjson
body and the same headers as the DRF views (``marketdata.api.history``). It serves a request
only when it is sure of the answer, and hands everything else to Django untouched, so every
error, redirect and edge case keeps exactly one implementation. Django gets:

- anything but a ``GET`` of those two paths (preflights, ``HEAD``, ``OPTIONS``), a request
  without ``Authorization: Bearer <token>`` (sessions, anonymous), a token that does not
  validate or whose user is not in the per-process user cache (``HISTORY_AUTH_CACHE_S``; the
  DRF view reads the row and fills the cache, so only the first request of a user in each
  interval goes there) or fails the approval or token-version check;
- a query the serializer-free validation does not accept plainly, a symbol not in the
  instrument cache (``HISTORY_INSTRUMENT_CACHE_S``), a range the API refuses, a bad cursor;
- a range reaching into the tick store's retention window (today's live bars are merged there),
  a page with a ``next`` link, a host Django would refuse, a plain-HTTP request when
  ``SECURE_SSL_REDIRECT`` is on, SQLite (the embedded default), and any failure of the pool.

The response headers are the ones Django's middleware adds to the view's answer (security
headers, Content-Security-Policy, CORS for an allowed ``Origin``, DRF's ``Allow`` and ``Vary``);
``marketdata/tests/test_history_route.py`` compares both answers header by header.
``HISTORY_FAST_ROUTE=false`` sends everything to Django.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import re
from collections.abc import Awaitable
from typing import Any

import orjson
from django.conf import settings
from django.db.utils import load_backend
from django.http import QueryDict
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework_simplejwt.authentication import AUTH_HEADER_TYPE_BYTES, JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.authentication import token_version_current, user_access_check
from core.gcfreeze import freeze_after_startup
from marketdata.api.auth import cached_jwt_user
from marketdata.api.history_headers import cors_signal_in_use, response_headers
from marketdata.api.history_query import (
    decode_cursor,
    fast_history_query,
    max_daily_days,
    max_intraday_days,
    resolve_range,
)
from marketdata.selectors import (
    BAR_FIELDS,
    daily_bars_sql,
    exchange_zone,
    instrument_cached,
    intraday_bars_sql,
    period_end,
    period_start,
)

logger = logging.getLogger(__name__)

_PATH = re.compile(r"^/marketdata/(intraday|daily)/?$")
_jwt = JWTAuthentication()


class HistoryRoute:
    """ASGI app: the fast history route in front of ``app`` (Django and the WebSocket router).

    Also answers the ``lifespan`` protocol, closing its pool at shutdown. ``served`` and
    ``passed`` count the requests it answered and the history GETs it handed to ``app``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.served = 0
        self.passed = 0

    def __call__(self, scope: dict, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine itself: what it passes on runs without a frame of this one kept
        # around it (a WebSocket connection would keep it for its whole life).
        if scope["type"] == "lifespan":
            return self._lifespan(receive, send)
        if scope["type"] == "http" and scope.get("method") == "GET" and (match := _PATH.match(scope["path"])):
            return self._history(scope, receive, send, intraday=match.group(1) == "intraday")
        return self.app(scope, receive, send)

    async def _history(self, scope: dict, receive: Any, send: Any, *, intraday: bool) -> None:
        try:
            answer = await _answer(scope, intraday=intraday)
        except Exception:  # the pool or the database failed: Django answers, as it would
            logger.warning("history route failed; Django answers", exc_info=True)
            answer = None
        if answer is not None:
            self.served += 1
            headers, body = answer
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        self.passed += 1
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                freeze_after_startup("web")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await close_history_pool()
                await send({"type": "lifespan.shutdown.complete"})
                return


@functools.cache
def _vendor(engine: str) -> str:
    """The database backend's vendor, whatever its ENGINE is named (read once, not per request:
    ``connections[alias]`` would build a connection wrapper in each request's context)."""
    return load_backend(engine).DatabaseWrapper.vendor


async def _answer(scope: dict, *, intraday: bool) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """(headers, body) of the 200 the DRF view would give, or None to hand the request to Django."""
    if not getattr(settings, "HISTORY_FAST_ROUTE", True) or scope.get("root_path") or cors_signal_in_use():
        return None
    if _vendor(settings.DATABASES["default"]["ENGINE"]) != "postgresql":
        return None
    headers: dict[bytes, bytes] = {}
    for key, value in scope.get("headers") or ():
        key = key.lower()
        if key in headers:  # a repeated header: Django joins them; leave that to it
            return None
        headers[key] = value
    secure = _is_secure(scope, headers)
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None
    if not _host_allowed(headers.get(b"host")):
        return None
    user_token = _authenticated(headers.get(b"authorization"))
    if user_token is None:
        return None
    try:
        params = QueryDict(scope.get("query_string", b"").decode())
    except UnicodeDecodeError:
        return None
    data = fast_history_query(params, intraday=intraday)
    if data is None:
        return None
    instrument = instrument_cached(symbol=data["symbol"], exchange=data.get("exchange"))
    if instrument is None:
        return None
    zone = exchange_zone(instrument.exchange)
    now = timezone.now()
    try:
        start, end = resolve_range(
            start=data.get("start_date"),
            end=data.get("end_date"),
            zone=zone,
            default_span=dt.timedelta(days=1 if intraday else 365),
            max_days=max_intraday_days() if intraday else max_daily_days(),
            now=now,
        )
        kind = dt.datetime if intraday else dt.date
        after = decode_cursor(data["cursor"], kind=kind) if data.get("cursor") else None
    except ValidationError:
        return None
    limit = data["limit"]
    interval = data["interval"]
    if intraday:
        from marketdata.live.store.base import BAR_RETENTION_MS

        if end > now - dt.timedelta(milliseconds=BAR_RETENTION_MS):
            return None  # the view merges the tick store's live bars in this window
        query = intraday_bars_sql(
            instrument=instrument, start=start, end=end, interval=interval, after=after, limit=limit + 1
        )
    else:
        first = period_start(start.astimezone(zone).date(), interval)
        last = period_end((end - dt.timedelta(microseconds=1)).astimezone(zone).date(), interval)
        query = daily_bars_sql(
            instrument=instrument, start_date=first, end_date=last, after=after, limit=limit + 1, interval=interval
        )
    rows = await _fetch(query) if query is not None else []
    if len(rows) > limit:
        return None  # a next link: Django builds its URL
    body = orjson.dumps(
        {
            "symbol": instrument.symbol,
            "exchange": instrument.exchange.code,
            "interval": interval,
            "timezone": zone.key,
            "results": rows,
            "next": None,
        },
        option=orjson.OPT_UTC_Z,
    )
    return response_headers(body=body, origin=headers.get(b"origin"), path=scope["path"], secure=secure), body


def _is_secure(scope: dict, headers: dict[bytes, bytes]) -> bool:
    """``request.is_secure()``: the trusted proxy's header when configured and sent, else the scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        sent = headers.get(name.removeprefix("HTTP_").lower().replace("_", "-").encode())
        if sent is not None:
            return sent.decode("latin-1").split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def _host_allowed(host: bytes | None) -> bool:
    """Whether Django's ``get_host`` would accept this Host header (it answers 400 otherwise)."""
    if host is None or settings.USE_X_FORWARDED_HOST:
        return False
    try:
        domain, _port = split_domain_port(host.decode("ascii"))
    except UnicodeDecodeError:
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _authenticated(header: bytes | None):
    """The validated token whose cached user passes the DRF view's checks, or None.

    simplejwt's own token validation (signature, expiry, token type), then what
    ``CachedUserJWTAuthentication`` does on a cache hit: the user must be approved and the
    token issued under the user's current ``token_version`` (the ``tv`` claim).
    """
    if header is None or jwt_settings.AUTH_HEADER_NAME != "HTTP_AUTHORIZATION":
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0] not in AUTH_HEADER_TYPE_BYTES:
        return None
    try:
        token = _jwt.get_validated_token(parts[1])
    except (InvalidToken, TokenError):
        return None
    user = cached_jwt_user(token)
    if user is None or not user.is_active or not token_version_current(user=user, token=token):
        return None
    try:
        user_access_check(user)
    except Exception:  # not approved: Django words the 403
        return None
    return token


# --- the async pool ---------------------------------------------------------------------------


class _Pool:
    """One ``psycopg_pool.AsyncConnectionPool`` per event loop (one per process under a server).

    Opened on first use with the database settings of that moment (the test runner renames the
    database before), UTC sessions in autocommit (reads only). ``HISTORY_POOL_MAX_SIZE``
    connections at most per process.
    """

    def __init__(self) -> None:
        self.pool = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self):
        loop = asyncio.get_running_loop()
        if self.pool is not None and self.loop is loop:
            return self.pool
        if self._lock is None or self.loop is not loop:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.pool is None or self.loop is not loop:
                from psycopg_pool import AsyncConnectionPool

                self.loop = loop
                self.pool = AsyncConnectionPool(
                    kwargs=_connect_kwargs(),
                    min_size=1,
                    max_size=int(getattr(settings, "HISTORY_POOL_MAX_SIZE", 4)),
                    timeout=float(getattr(settings, "HISTORY_POOL_TIMEOUT_S", 5.0)),
                    open=False,
                    name="history",
                )
                await self.pool.open(wait=True)
        return self.pool

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None and self.loop is asyncio.get_running_loop():
            await pool.close()
        self.loop = None


_pool = _Pool()


def _connect_kwargs() -> dict[str, Any]:
    """psycopg connection arguments of the default database, as Django would connect."""
    from django.db import connection

    params = connection.get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(name, None)
    params["autocommit"] = True
    params["options"] = (params.get("options", "") + " -c TimeZone=UTC").strip()
    return params


async def close_history_pool() -> None:
    """Close this process's history pool (at lifespan shutdown; tests between event loops)."""
    await _pool.close()


async def _fetch(query: tuple[str, list[Any]]) -> list[dict[str, Any]]:
    """The query's rows as bar dicts, on a pooled connection."""
    pool = await _pool.get()
    async with pool.connection() as conn, conn.cursor() as cursor:
        await cursor.execute(*query)
        rows = await cursor.fetchall()
    return [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows]
