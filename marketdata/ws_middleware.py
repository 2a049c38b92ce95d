"""ASGI middleware in front of ``/ws``: origin check, session or JWT user, send back-pressure probe.

A connection is authenticated by the Django session cookie (the dashboard), by a JWT access
token in the ``Sec-WebSocket-Protocol`` header (``marketapp, bearer.<token>``; the server
accepts ``marketapp``) or in ``?token=...`` (old clients; it reaches access logs), or later
by an ``auth`` message (see the consumer). With ``WS_ALLOW_ANONYMOUS`` the consumer also
serves connections that bring none (the seed front end cannot send a token); a bad token or
a session user not approved is still refused. The origin check (``BrowserOriginValidator``)
refuses foreign browser origins with 403; the authentication middleware never refuses a
connection itself: the consumer accepts it and answers with
an ``error`` and close code 4401, which a browser can read (a refused handshake cannot
carry a reason).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils.http import is_same_domain

from marketdata.live.outbox import raw_send, transport_backlog_probe
from marketdata.ws_auth import MAX_TOKEN_CHARS, acheck_token, check_token, user_standing

__all__ = ["MAX_TOKEN_CHARS", "user_for_token"]

SCOPE_AUTH_ERROR = "marketapp.auth_error"  # a reason of ``ws_auth.AUTH_REASONS``
SCOPE_BACKLOG = "marketapp.transport_backlog"
SCOPE_RAW_SEND = "marketapp.raw_send"
SCOPE_TOKEN_EXPIRES = "marketapp.token_expires_at"  # noqa: S105 - a scope key
SCOPE_TOKEN_VERSION = "marketapp.token_version"  # noqa: S105 - a scope key
SCOPE_SUBPROTOCOL = "marketapp.subprotocol"
SUBPROTOCOL = "marketapp"
BEARER_PREFIX = "bearer."


def user_for_token(raw: str):
    """``(user, None)`` for a valid JWT access token of an active, approved user, else ``(None, text)``.

    Sync (database queries). See ``ws_auth.check_token``, which also gives the expiry and a reason code.
    """
    found = check_token(raw)
    return (found.user, None) if found.user is not None else (None, found.message)


def _token_from_scope(scope) -> tuple[str | None, str | None]:
    """``(token, subprotocol to accept)``: ``Sec-WebSocket-Protocol: marketapp, bearer.<token>``, else ``?token=``."""
    offered = [str(p) for p in scope.get("subprotocols") or ()]
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
    for item in offered:
        if item.startswith(BEARER_PREFIX):
            return item[len(BEARER_PREFIX) :], chosen
    tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return (tokens[-1] if tokens else None), chosen


async def authenticate(scope) -> None:
    """Set ``scope["user"]`` from a JWT access token, or note why not; checks a session user's standing.

    The token comes in the ``bearer.<token>`` subprotocol (the documented way: it stays out of
    access logs) or in ``?token=`` (old clients). A valid token replaces the session user; an
    invalid one is an error even when a session exists (the client asked for that identity).
    The check runs off the shared sync thread.
    """
    token, subprotocol = _token_from_scope(scope)
    scope[SCOPE_SUBPROTOCOL] = subprotocol
    if token is not None:
        found = await acheck_token(token)
        if found.user is not None:
            scope["user"] = found.user
            scope[SCOPE_TOKEN_EXPIRES] = found.expires_at
            scope[SCOPE_TOKEN_VERSION] = found.version
        else:
            scope[SCOPE_AUTH_ERROR] = found.reason
        return
    # The session user was loaded by AuthMiddlewareStack (inactive users come back anonymous).
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        problem = user_standing(user)
        if problem:
            scope[SCOPE_AUTH_ERROR] = problem


def note_transport(scope, send) -> None:
    """Put the server's own ``send`` and a probe of its unsent bytes (daphne only, see ``outbox``) in the scope.

    It must see ``send`` before any middleware that replaces it (the session middleware does).
    The consumer writes its ``websocket.send`` frames through that raw ``send``: channels'
    session middleware wraps ``send`` to save the session on ``http.response.start``, and for
    every live update it would only inspect the (lazy) session and pass the frame on, about 9%
    of the server's CPU under fan-out load. Wrappers outside this one that only add handshake
    headers (the request id's) leave the server's callable in ``__wrapped__``: the frames skip
    them too (``raw_send``), while the handshake and the close still go through them.
    """
    scope[SCOPE_BACKLOG] = transport_backlog_probe(send)
    scope[SCOPE_RAW_SEND] = raw_send(send)


class TransportBacklogMiddleware:
    """``note_transport`` as a middleware of its own (for stacks without authentication)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        note_transport(scope, send)
        return await self.inner(scope, receive, send)


def _has_session_cookie(scope) -> bool:
    cookie_name = getattr(settings, "SESSION_COOKIE_NAME", "sessionid").encode()
    return any(name == b"cookie" and cookie_name + b"=" in value for name, value in scope.get("headers") or ())


class WebSocketAuthMiddleware:
    """Session cookie or JWT authentication, plus the transport probe (``note_transport``), around ``inner``.

    Session authentication only for handshakes that carry the session cookie: channels'
    ``AuthMiddlewareStack`` loads the user on the shared sync thread even without a cookie; a
    token client skips it, so a busy shared thread cannot hold its login up.

    One layer that updates the scope in place, not three nested middlewares that each copy
    it: a suspended middleware keeps its frame and its copy for the life of the connection,
    about 2 KiB of every idle connection (README, Performance). The server builds a new scope
    for each connection and never reads it back, so nothing leaks upstream.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.with_session = AuthMiddlewareStack(self._after_session)

    async def __call__(self, scope, receive, send):
        note_transport(scope, send)
        if _has_session_cookie(scope):
            return await self.with_session(scope, receive, send)
        scope["user"] = AnonymousUser()
        await authenticate(scope)
        return await self.inner(scope, receive, send)

    async def _after_session(self, scope, receive, send):
        await authenticate(scope)
        return await self.inner(scope, receive, send)


class BrowserOriginValidator:
    """Checks a browser's ``Origin``: scheme, host and port, against the allowed origins.

    Allowed: the server's own origin for this handshake (the scheme of the connection, or
    https behind a proxy that says so in ``SECURE_PROXY_SSL_HEADER``; host and port from the
    ``Host`` header, the host in ``ALLOWED_HOSTS``), and the cross-origin apps
    (``CORS_ALLOWED_ORIGINS``, ``CORS_ALLOWED_ORIGIN_REGEXES``): one list for HTTP and WebSocket.
    Anything else is refused with 403. Browsers always send ``Origin``; programs (Python, curl)
    send none and authenticate with a token another site cannot use, so a missing ``Origin``
    is let through. Settings are read per handshake.
    """

    def __init__(self, application) -> None:
        self.application = application

    def __call__(self, scope, receive, send):
        # Not a coroutine: what it passes on runs without a frame of this one kept around it.
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return WebsocketDenier()(scope, receive, send)
        return self.application(scope, receive, send)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None


def _normal(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower().rstrip("."), port or (443 if scheme == "https" else 80)


def _request_scheme(scope) -> str:
    if scope.get("scheme") in ("wss", "https"):
        return "https"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        seen = _header(scope, header)
        if seen is not None and seen.split(",")[0].strip() == value:
            return "https"
    return "http"


def origin_allowed(scope) -> bool:
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    if cors_origin_allowed(urlparse(origin)):
        return True
    try:
        parsed = urlparse(origin)
        seen = _normal(parsed.scheme.lower(), parsed.hostname or "", parsed.port)
    except ValueError:
        return False
    host_header = _header(scope, b"host")
    scheme = _request_scheme(scope)
    allowed_hosts = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if host_header:
        try:
            own = urlparse(f"//{host_header}")
            expected = _normal(scheme, own.hostname or "", own.port)
        except ValueError:
            return False
        return seen == expected and is_same_domain_host(expected[1], allowed_hosts)
    # No Host header (an in-process ASGI client): the host must be allowed, scheme as the connection's.
    return seen[0] == scheme and is_same_domain_host(seen[1], allowed_hosts)


def is_same_domain_host(host: str, allowed_hosts) -> bool:
    bare = host[1:-1] if host.startswith("[") else host
    return any(
        pattern == "*" or is_same_domain(host, pattern) or is_same_domain(bare, pattern.strip("[]"))
        for pattern in allowed_hosts
    )


def cors_origin_allowed(parsed_origin) -> bool:
    """Whether ``scheme://host[:port]`` is one of the configured cross-origin apps."""
    origin = f"{parsed_origin.scheme}://{parsed_origin.netloc}".lower()
    if origin in {o.lower().rstrip("/") for o in getattr(settings, "CORS_ALLOWED_ORIGINS", ())}:
        return True
    return any(re.fullmatch(pattern, origin) for pattern in getattr(settings, "CORS_ALLOWED_ORIGIN_REGEXES", ()))


def AllowedHostsBrowserOriginValidator(application):
    """``BrowserOriginValidator`` around ``application`` (``ALLOWED_HOSTS`` and CORS origins, read per handshake)."""
    return BrowserOriginValidator(application)
