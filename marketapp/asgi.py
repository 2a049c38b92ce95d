"""ASGI entry point: ``uvicorn marketapp.asgi:application`` (daphne works too).

HTTP goes to Django, except the plain ``GET``s of ``/marketdata/intraday`` and
``/marketdata/daily`` that the fast history route in front of it answers itself (the same
checks, SQL and bytes, without Django's per-request cost; ``marketdata.api.history_route``);
``/ws`` is the live market data feed (``marketdata.consumers``), behind an origin check and
session-or-JWT authentication. Every worker process of the server imports this module, so
each has its own hub, history pool and metrics snapshot publisher.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketapp.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from core.request_id import RequestIdMiddleware  # noqa: E402
from ingestion.metrics import start_snapshot_publisher  # noqa: E402
from marketdata.api.history_route import HistoryRoute  # noqa: E402
from marketdata.consumers import MarketDataConsumer  # noqa: E402
from marketdata.routing import WebSocketRouter, websocket_urlpatterns  # noqa: E402
from marketdata.ws_middleware import AllowedHostsBrowserOriginValidator, WebSocketAuthMiddleware  # noqa: E402

if settings.SEED_COMPAT:
    # The seed front end's socket: the same consumer, which speaks the seed's framing when the
    # client's first frame asks for it (an integer message_type).
    websocket_urlpatterns = [
        re_path(rf"^{settings.SEED_COMPAT_PREFIX}ws/?$", MarketDataConsumer.as_asgi(), name="seedcompat-ws"),
        *websocket_urlpatterns,
    ]

# Stack mode: this web process's /ws figures go to Redis, so whichever process a scrape of
# /metrics reaches exports every process's (see ingestion/metrics.py).
start_snapshot_publisher("web")

# Outermost: every HTTP request and WebSocket connection gets its X-Request-ID (core/request_id.py).
# Then the history route, which answers the lifespan protocol and hands all it does not serve on.
application = RequestIdMiddleware(
    HistoryRoute(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                "websocket": AllowedHostsBrowserOriginValidator(
                    WebSocketAuthMiddleware(WebSocketRouter(websocket_urlpatterns))
                ),
            }
        )
    )
)
