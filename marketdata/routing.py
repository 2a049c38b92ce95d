"""WebSocket routes of the marketdata app (mounted by ``marketapp.asgi``)."""

from django.urls import re_path

from marketdata.consumers import MarketDataConsumer

websocket_urlpatterns = [
    re_path(r"^ws/?$", MarketDataConsumer.as_asgi(), name="marketdata-ws"),
]
