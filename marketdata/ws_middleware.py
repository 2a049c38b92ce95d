"""ASGI middleware in front of ``/ws``: origin check, session or JWT user, send back-pressure probe.

A connection is authenticated by the Django session cookie (the dashboard), by a JWT access
token in ``?token=...`` (API clients), or later by an ``auth`` message (see the consumer). With
``WS_ALLOW_ANONYMOUS`` the consumer also serves connections that bring none (the seed front end
cannot send a token); a bad token or a session user not approved is still refused.
The middleware never refuses a connection itself: the consumer accepts it and answers with
an ``error`` and close code 4401, which a browser can read (a refused handshake cannot
carry a reason).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings

from marketdata.live.outbox import transport_backlog_probe

MAX_TOKEN_CHARS = 4096
SCOPE_AUTH_ERROR = "marketapp.auth_error"
SCOPE_BACKLOG = "marketapp.transport_backlog"
SCOPE_RAW_SEND = "marketapp.raw_send"


def user_for_token(raw: str):
    """``(user, None)`` for a valid JWT access token of an active, approved user, else ``(None, reason)``.

    Uses simplejwt's own validation (signature, expiry, token type, blacklist when the token
    class checks one, user active) and the accounts app's approval check, so the WebSocket
    accepts exactly what the REST API does: a pending or rejected user's reason starts with
    ``account_pending`` / ``account_rejected``. The user row is read at every authentication.
    Runs database queries: call it through ``database_sync_to_async`` from async code.
    """
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

    from accounts.authentication import AccountNotApproved, ApprovedJWTAuthentication

    if not raw or len(raw) > MAX_TOKEN_CHARS:
        return None, "Invalid token."
    auth = ApprovedJWTAuthentication()
    try:
        token = auth.get_validated_token(raw.encode())
        user = auth.get_user(token)
    except InvalidToken as exc:
        return None, f"Invalid token: {_token_problem(exc.detail)}."
    except AccountNotApproved as exc:
        return None, str(exc.detail)
    except (AuthenticationFailed, TokenError) as exc:
        return None, f"Invalid token: {getattr(exc, 'detail', exc)}"
    return user, None


def session_user_problem(user) -> str | None:
    """Why a session-authenticated user may not use ``/ws`` (not approved), or ``None``."""
    from accounts.authentication import AccountNotApproved, user_access_check

    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        user_access_check(user)
    except AccountNotApproved as exc:
        return str(exc.detail)
    return None


def _token_problem(detail) -> str:
    """The first specific reason simplejwt gave ("Token is expired"), else its summary."""
    if isinstance(detail, dict):
        for item in detail.get("messages") or ():
            if isinstance(item, dict) and item.get("message"):
                return str(item["message"])
        return str(detail.get("detail", "not valid"))
    return str(detail)


class JWTQueryAuthMiddleware:
    """Sets ``scope["user"]`` from ``?token=<JWT access token>``; a bad token is noted in the scope.

    Sits inside ``AuthMiddlewareStack``: a valid token replaces the session user; an invalid
    one is an error even when a session exists (the client asked for that identity).
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if tokens:
            scope = dict(scope)
            user, problem = await database_sync_to_async(user_for_token)(tokens[-1])
            if user is not None:
                scope["user"] = user
            else:
                scope[SCOPE_AUTH_ERROR] = problem
        else:
            # The session user was loaded by AuthMiddlewareStack (inactive users come back anonymous).
            problem = session_user_problem(scope.get("user"))
            if problem:
                scope = dict(scope, **{SCOPE_AUTH_ERROR: problem})
        return await self.inner(scope, receive, send)


class TransportBacklogMiddleware:
    """Puts the server's own ``send`` and a probe of its unsent bytes (daphne only, see ``outbox``) in the scope.

    It must wrap every middleware that replaces ``send`` (the session middleware does), so
    it sees the server's own callable. The consumer writes its ``websocket.send`` frames
    through that raw ``send``: channels' session middleware wraps ``send`` to save the
    session on ``http.response.start``, and for every live update it would only inspect the
    (lazy) session and pass the frame on, about 9% of the server's CPU under fan-out load.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        scope = dict(scope, **{SCOPE_BACKLOG: transport_backlog_probe(send), SCOPE_RAW_SEND: send})
        return await self.inner(scope, receive, send)


def WebSocketAuthMiddleware(inner):
    """Session cookie or JWT authentication, plus the transport probe, around ``inner``."""
    return TransportBacklogMiddleware(AuthMiddlewareStack(JWTQueryAuthMiddleware(inner)))


class BrowserOriginValidator(OriginValidator):
    """Checks the ``Origin`` against ``ALLOWED_HOSTS`` when there is one.

    Browsers always send ``Origin`` on a WebSocket handshake, so checking it stops other
    sites from riding on the dashboard's session cookie. Programs (Python, curl) send none
    and authenticate with a token, which another site cannot use, so a missing ``Origin`` is
    let through (channels' ``AllowedHostsOriginValidator`` would refuse them).

    A browser app served from another origin is let in when that origin is allowed for
    cross-origin HTTP too (``CORS_ALLOWED_ORIGINS``, ``CORS_ALLOWED_ORIGIN_REGEXES``): one list
    for both. Any other foreign origin is refused with 403, as before.
    """

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin) or cors_origin_allowed(parsed_origin)


def cors_origin_allowed(parsed_origin) -> bool:
    """Whether ``scheme://host[:port]`` is one of the configured cross-origin apps."""
    origin = f"{parsed_origin.scheme}://{parsed_origin.netloc}".lower()
    if origin in {o.lower().rstrip("/") for o in getattr(settings, "CORS_ALLOWED_ORIGINS", ())}:
        return True
    return any(re.fullmatch(pattern, origin) for pattern in getattr(settings, "CORS_ALLOWED_ORIGIN_REGEXES", ()))


def AllowedHostsBrowserOriginValidator(application):
    """``BrowserOriginValidator`` for ``settings.ALLOWED_HOSTS``."""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
