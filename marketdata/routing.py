"""WebSocket routes of the marketdata app (mounted by ``marketapp.asgi``)."""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.urls import re_path

from marketdata.consumers import MarketDataConsumer

websocket_urlpatterns = [
    re_path(r"^ws/?$", MarketDataConsumer.as_asgi(), name="marketdata-ws"),
]


class WebSocketRouter:
    """Handshake path -> the application of the first URL pattern that matches it (no arguments).

    channels' ``URLRouter`` for patterns without arguments, minus the scope copy: it passes on a
    new scope (with ``url_route`` and ``path_remaining``) that lives as long as the connection,
    about 1.5 KiB of every idle one (README, Performance); this passes the server's own. A path
    no pattern matches is refused (403) instead of raising (a 500 and a traceback).
    """

    def __init__(self, urlpatterns) -> None:
        self.urlpatterns = list(urlpatterns)

    def __call__(self, scope, receive, send):
        # Not a coroutine: the consumer runs without a frame of this one kept around it.
        path = scope.get("path") or ""
        root_path = scope.get("root_path") or ""
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        path = path.lstrip("/")
        for pattern in self.urlpatterns:
            if pattern.pattern.match(path):
                return pattern.callback(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)
