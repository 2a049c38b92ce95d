"""The DRF browsable API works for a user signed in with a session."""

import pytest

pytestmark = pytest.mark.django_db


def test_session_user_browses_the_api_in_html(client, user):
    client.force_login(user)
    response = client.get("/instruments/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"Instrument" in response.content and b"&quot;count&quot;: 0" in response.content


def test_anonymous_request_is_401_in_the_error_format(client):
    response = client.get("/instruments/", HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["status_code"] == 401
