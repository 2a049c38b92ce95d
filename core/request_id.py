"""Request ids: one per HTTP request and per WebSocket connection, in every log line it causes.

``RequestIdMiddleware`` wraps the whole ASGI application (``marketapp/asgi.py``). It takes the
client's or the proxy's ``X-Request-ID`` when it is well formed (1 to 128 characters of
letters, digits and ``.`` ``_`` ``:`` ``-``, so a client cannot forge log lines or fill them), or
makes one (32 hex digits), keeps it in a context variable for the request or the whole
connection, and answers it in the ``X-Request-ID`` header of the HTTP response or of the
WebSocket handshake. Context variables follow the request into async views, Django's sync
views (asgiref copies the context into its threads), Channels consumers and the server's
own access log line, which is written from inside the application's ``send``.

django-guid and asgi-correlation-id do the same but accept only UUIDs (or anything, unchecked)
by default; the first is Django middleware, which WebSocket connections never pass through,
and the second brings Starlette along for its header helpers.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id_get() -> str | None:
    """The id of the request or WebSocket connection being served, or None outside one."""
    return _current.get()


def request_id_from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The incoming ``X-Request-ID`` when it is well formed, else a new id."""
    for key, value in headers:
        if key.lower() == _HEADER_KEY:
            if _WELL_FORMED.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


class SendWithId:
    """The server's ``send`` plus the ``X-Request-ID`` header on ``http.response.start`` and ``websocket.accept``.

    A small slotted object rather than a closure: a WebSocket connection keeps it for its whole
    life, and a function with an attribute set carries a dict besides its cell. Servers'
    ``send`` callables can carry what the transport knows (daphne's is a partial of its
    protocol, which the /ws outbox reads its backlog from): it stays reachable as ``__wrapped__``.
    """

    __slots__ = ("__wrapped__", "header")

    def __init__(self, send: Any, header: tuple[bytes, bytes]) -> None:
        self.__wrapped__ = send
        self.header = header

    async def __call__(self, message: dict) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            message = {**message, "headers": [*message.get("headers", ()), self.header]}
        await self.__wrapped__(message)


class RequestIdMiddleware:
    """ASGI middleware: a request id for each HTTP request and WebSocket connection (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from_headers(scope.get("headers") or [])
        token = _current.set(request_id)
        try:
            await self.app(scope, receive, SendWithId(send, (_HEADER_KEY, request_id.encode("ascii"))))
        finally:
            _current.reset(token)
