"""ASGI entry point: ``daphne marketapp.asgi:application`` (uvicorn works too).

HTTP goes to Django; ``/ws`` is the live market data feed (``marketdata.consumers``), behind
an origin check and session-or-JWT authentication.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketapp.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from marketdata.routing import websocket_urlpatterns  # noqa: E402
from marketdata.ws_middleware import AllowedHostsBrowserOriginValidator, WebSocketAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsBrowserOriginValidator(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
