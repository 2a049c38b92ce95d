"""Cross-origin browser apps: CORS on every API path, and the same list on the /ws Origin check."""

from __future__ import annotations

import re

import pytest
from channels.testing import WebsocketCommunicator
from drf_spectacular.generators import SchemaGenerator
from rest_framework_simplejwt.tokens import AccessToken

from marketapp.asgi import application

APP = "http://app.example:5173"
FOREIGN = "https://evil.example"


def _api_paths() -> list[str]:
    """Every path of the OpenAPI schema, with its parameters filled in."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(re.sub(r"\{[^}]+\}", "1", path) for path in schema["paths"])


API_PATHS = _api_paths()


def _preflight(client, path: str, origin: str, method: str = "POST"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def test_the_schema_lists_the_api() -> None:
    assert {
        "/exchange/",
        "/marketdata/daily/",
        "/auth/login",
        "/watchlists/{watchlist_id}/".replace("{watchlist_id}", "1"),
    } <= set(API_PATHS)


@pytest.mark.django_db
@pytest.mark.parametrize("path", API_PATHS)
def test_preflight_on_every_api_path_answers_an_allowed_origin(client, settings, path: str) -> None:
    settings.CORS_ALLOWED_ORIGINS = [APP]
    response = _preflight(client, path, APP)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/exchange/", "/marketdata/daily", "/auth/login", "/instruments/1"])
def test_a_foreign_origin_gets_no_cors_headers(client, settings, path: str) -> None:
    settings.CORS_ALLOWED_ORIGINS = [APP]
    response = _preflight(client, path, FOREIGN)
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Headers" not in response


@pytest.mark.django_db
def test_by_default_no_origin_is_allowed(client) -> None:
    response = _preflight(client, "/exchange/", APP)
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.django_db
def test_origins_by_pattern(client, settings) -> None:
    settings.CORS_ALLOWED_ORIGIN_REGEXES = [r"^https://[a-z0-9-]+\.apps\.example$"]
    assert _preflight(client, "/exchange/", "https://team-1.apps.example")["Access-Control-Allow-Origin"] == (
        "https://team-1.apps.example"
    )
    assert "Access-Control-Allow-Origin" not in _preflight(client, "/exchange/", "https://apps.example.evil.example")


@pytest.mark.django_db
def test_credentials_only_when_configured(client, settings) -> None:
    settings.CORS_ALLOWED_ORIGINS = [APP]
    settings.CORS_ALLOW_CREDENTIALS = True
    assert _preflight(client, "/auth/login", APP)["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.django_db
def test_the_actual_response_carries_the_header_errors_included(client, settings) -> None:
    """A browser reads an error body (401, 404) only when the response allows its origin."""
    settings.CORS_ALLOWED_ORIGINS = [APP]
    unauthenticated = client.get("/marketdata/daily?symbol=AAPL", HTTP_ORIGIN=APP)
    assert unauthenticated.status_code == 401
    assert unauthenticated["Access-Control-Allow-Origin"] == APP
    assert client.get("/health/", HTTP_ORIGIN=APP)["Access-Control-Allow-Origin"] == APP


# --- the WebSocket Origin check follows the same list --------------------------------------------
pytestmark_ws = pytest.mark.django_db(transaction=True)


async def _ws_connects(origin: str, token: str) -> bool:
    communicator = WebsocketCommunicator(application, f"/ws?token={token}", headers=[(b"origin", origin.encode())])
    connected, _ = await communicator.connect(timeout=3)
    await communicator.disconnect()
    return connected


@pytest.fixture
def ws_settings(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.REDIS_URL = ""
    return settings


@pytestmark_ws
async def test_ws_admits_an_allowed_cross_origin_app_and_refuses_others(ws_settings, user) -> None:
    token = str(AccessToken.for_user(user))
    assert not await _ws_connects(APP, token)  # not configured: refused as before
    ws_settings.CORS_ALLOWED_ORIGINS = [APP]
    assert await _ws_connects(APP, token)
    assert not await _ws_connects(FOREIGN, token)
    ws_settings.CORS_ALLOWED_ORIGIN_REGEXES = [r"^https://[a-z0-9-]+\.apps\.example$"]
    assert await _ws_connects("https://team-1.apps.example", token)
