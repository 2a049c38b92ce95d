"""REST API of exchanges: /exchange/ and /exchange/{id}."""

from __future__ import annotations

import pytest

from exchanges.models import Exchange
from exchanges.tests.factories import ExchangeFactory
from instruments.tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db


def _payload(**overrides) -> dict:
    payload = {
        "name": "National Stock Exchange of India",
        "code": "nse",
        "timezone": "Asia/Kolkata",
        "country": "India",
        "currency": "inr",
        "market_open": "09:15:00",
        "market_close": "15:30:00",
        "calendar_code": "XBOM",
    }
    payload.update(overrides)
    return payload


def _assert_error(response, status_code: int) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


# --- reads -------------------------------------------------------------------------------------


def test_list_is_paginated_and_ordered_by_code(user_api_client):
    ExchangeFactory(code="NSE")
    ExchangeFactory(code="BSE")

    response = user_api_client.get("/exchange/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [row["code"] for row in body["results"]] == ["BSE", "NSE"]
    assert set(body["results"][0]) >= {"id", "name", "timezone", "currency", "market_open", "is_active"}


@pytest.mark.parametrize("path", ["/exchange", "/exchange/"])
def test_list_answers_with_and_without_trailing_slash(user_api_client, path):
    ExchangeFactory()

    response = user_api_client.get(path)

    assert response.status_code == 200
    assert response.json()["count"] == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("country=india", ["BSE", "NSE"]),
        ("currency=usd", ["NASDAQ"]),
        ("is_active=false", ["OLD"]),
        ("is_active=true&country=India", ["BSE", "NSE"]),
        ("search=nas", ["NASDAQ"]),
        ("search=bombay", ["BSE"]),
    ],
)
def test_list_filters(user_api_client, query, expected):
    ExchangeFactory(code="NSE", name="National Stock Exchange", country="India", currency="INR")
    ExchangeFactory(code="BSE", name="Bombay Stock Exchange", country="India", currency="INR")
    ExchangeFactory(code="NASDAQ", name="Nasdaq", country="US", currency="USD")
    ExchangeFactory(code="OLD", name="Closed market", country="UK", currency="GBP", is_active=False)

    response = user_api_client.get(f"/exchange/?{query}")

    assert response.status_code == 200
    assert [row["code"] for row in response.json()["results"]] == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("is_active=maybe", "is_active"),
        ("search=n%00se", "search"),
        ("country=%00", "country"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
    ],
)
def test_list_rejects_bad_parameters(user_api_client, query, field):
    body = _assert_error(user_api_client.get(f"/exchange/?{query}"), 400)
    assert field in body["errors"]


def test_list_needs_authentication(api_client):
    _assert_error(api_client.get("/exchange/"), 401)


def test_retrieve(user_api_client):
    exchange = ExchangeFactory(code="NSE", timezone="Asia/Kolkata")

    for path in (f"/exchange/{exchange.pk}", f"/exchange/{exchange.pk}/"):
        response = user_api_client.get(path)
        assert response.status_code == 200
        assert response.json()["code"] == "NSE"
        assert response.json()["timezone"] == "Asia/Kolkata"


@pytest.mark.parametrize("path", ["/exchange/999999", "/exchange/abc", "/exchange/99999999999999999999999"])
def test_retrieve_unknown_is_404_in_error_format(user_api_client, path):
    _assert_error(user_api_client.get(path), 404)


def test_retrieve_needs_authentication(api_client):
    exchange = ExchangeFactory()
    _assert_error(api_client.get(f"/exchange/{exchange.pk}"), 401)


# --- create ------------------------------------------------------------------------------------


def test_create_normalizes_code_and_currency(admin_api_client):
    response = admin_api_client.post("/exchange/", _payload(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code"] == "NSE"
    assert body["currency"] == "INR"
    assert body["market_open"] == "09:15:00"
    exchange = Exchange.objects.get(pk=body["id"])
    assert (exchange.code, exchange.timezone, exchange.calendar_code) == ("NSE", "Asia/Kolkata", "XBOM")


def test_create_24_hour_exchange_needs_no_hours(admin_api_client):
    payload = _payload(code="CRYPTO", timezone="UTC", currency="USDT", calendar_code="", is_open_24_hours=True)
    del payload["market_open"], payload["market_close"]

    response = admin_api_client.post("/exchange", payload, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["is_open_24_hours"] is True


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "IST"}, "timezone"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": 12}, "currency"),
        ({"market_open": "16:00:00", "market_close": "09:30:00"}, "market_close"),
        ({"market_open": "09:30:00", "market_close": "09:30:00"}, "market_close"),
        ({"market_open": None}, "non_field_errors"),
        ({"market_open": "25:99"}, "market_open"),
        ({"is_open_24_hours": "maybe"}, "is_open_24_hours"),
        ({"calendar_code": "NOPE"}, "calendar_code"),
        ({"code": ""}, "code"),
        ({"code": "N\u0000SE"}, "code"),
        ({"code": "X" * 21}, "code"),
        ({"name": None}, "name"),
    ],
)
def test_create_rejects_invalid_values(admin_api_client, overrides, field):
    response = admin_api_client.post("/exchange/", _payload(**overrides), format="json")

    body = _assert_error(response, 400)
    assert field in body["errors"], body
    assert not Exchange.objects.exists()


@pytest.mark.parametrize("code", ["NSE", "nse", " Nse "])
def test_create_duplicate_code_is_400_regardless_of_case(admin_api_client, code):
    ExchangeFactory(code="NSE")

    body = _assert_error(admin_api_client.post("/exchange/", _payload(code=code), format="json"), 400)

    assert "code" in body["errors"]
    assert Exchange.objects.count() == 1


def test_create_missing_required_fields(admin_api_client):
    body = _assert_error(admin_api_client.post("/exchange/", {}, format="json"), 400)
    assert {"name", "code", "timezone", "currency"} <= set(body["errors"])


def test_create_rejects_a_non_object_body(admin_api_client):
    _assert_error(admin_api_client.post("/exchange/", ["NSE"], format="json"), 400)


# --- update ------------------------------------------------------------------------------------


def test_put_replaces_the_exchange(admin_api_client):
    exchange = ExchangeFactory(code="OLD", country="US", mic="XNAS")

    response = admin_api_client.put(f"/exchange/{exchange.pk}", _payload(code="bse", mic=""), format="json")

    assert response.status_code == 200, response.content
    exchange.refresh_from_db()
    assert (exchange.code, exchange.country, exchange.mic, exchange.timezone) == ("BSE", "India", "", "Asia/Kolkata")


def test_put_needs_every_required_field(admin_api_client):
    exchange = ExchangeFactory()

    body = _assert_error(admin_api_client.put(f"/exchange/{exchange.pk}", {"name": "x"}, format="json"), 400)

    assert "code" in body["errors"]


def test_patch_changes_only_what_is_sent(admin_api_client):
    exchange = ExchangeFactory(code="NSE", name="Old name")

    response = admin_api_client.patch(f"/exchange/{exchange.pk}/", {"name": "New name"}, format="json")

    assert response.status_code == 200, response.content
    exchange.refresh_from_db()
    assert (exchange.code, exchange.name) == ("NSE", "New name")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"code": "bse"}, "code"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"currency": "ABC"}, "currency"),
        ({"market_close": "08:00:00"}, "market_close"),
        ({"is_active": "perhaps"}, "is_active"),
    ],
)
def test_patch_rejects_invalid_values(admin_api_client, patch, field):
    ExchangeFactory(code="BSE")
    exchange = ExchangeFactory(code="NSE", name="Unchanged")

    body = _assert_error(admin_api_client.patch(f"/exchange/{exchange.pk}", patch, format="json"), 400)

    assert field in body["errors"]
    exchange.refresh_from_db()
    assert (exchange.code, exchange.name) == ("NSE", "Unchanged")


def test_update_unknown_exchange_is_404(admin_api_client):
    _assert_error(admin_api_client.patch("/exchange/424242", {"name": "x"}, format="json"), 404)


# --- delete ------------------------------------------------------------------------------------


def test_delete_without_instruments(admin_api_client):
    exchange = ExchangeFactory()

    response = admin_api_client.delete(f"/exchange/{exchange.pk}")

    assert response.status_code == 204
    assert not Exchange.objects.filter(pk=exchange.pk).exists()


def test_delete_with_instruments_is_409_and_explains(admin_api_client):
    exchange = ExchangeFactory(code="NSE")
    InstrumentFactory.create_batch(3, exchange=exchange)

    body = _assert_error(admin_api_client.delete(f"/exchange/{exchange.pk}"), 409)

    assert "3 instruments" in body["detail"]
    assert "force=true" in body["detail"]
    exchange.refresh_from_db()
    assert exchange.is_active is True


def test_delete_with_force_deactivates(admin_api_client):
    exchange = ExchangeFactory()
    instrument = InstrumentFactory(exchange=exchange)

    response = admin_api_client.delete(f"/exchange/{exchange.pk}?force=true")

    assert response.status_code == 200, response.content
    assert response.json()["is_active"] is False
    exchange.refresh_from_db()
    assert exchange.is_active is False
    assert exchange.instruments.get() == instrument


def test_delete_with_force_and_no_instruments_deletes(admin_api_client):
    exchange = ExchangeFactory()

    assert admin_api_client.delete(f"/exchange/{exchange.pk}?force=true").status_code == 204
    assert not Exchange.objects.filter(pk=exchange.pk).exists()


def test_delete_rejects_a_malformed_force(admin_api_client):
    exchange = ExchangeFactory()

    body = _assert_error(admin_api_client.delete(f"/exchange/{exchange.pk}?force=maybe"), 400)

    assert "force" in body["errors"]
    assert Exchange.objects.filter(pk=exchange.pk).exists()


def test_delete_unknown_exchange_is_404(admin_api_client):
    _assert_error(admin_api_client.delete("/exchange/424242"), 404)


# --- who may write -----------------------------------------------------------------------------

WRITES = {
    "create": ("post", lambda exchange: "/exchange/", lambda: _payload(code="NEW"), 201),
    "put": ("put", lambda exchange: f"/exchange/{exchange.pk}", lambda: _payload(code="NEW"), 200),
    "patch": ("patch", lambda exchange: f"/exchange/{exchange.pk}", lambda: {"name": "Renamed"}, 200),
    "delete": ("delete", lambda exchange: f"/exchange/{exchange.pk}", lambda: None, 204),
}


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize(
    ("client_fixture", "expected"),
    [("api_client", 401), ("user_api_client", 403), ("admin_api_client", None)],
)
def test_write_authorization(request, operation, client_fixture, expected):
    method, path, payload, admin_status = WRITES[operation]
    client = request.getfixturevalue(client_fixture)
    exchange = ExchangeFactory(code="EXISTING", name="Existing")

    response = getattr(client, method)(path(exchange), payload(), format="json")

    if expected is None:
        assert response.status_code == admin_status, response.content
        return
    _assert_error(response, expected)
    exchange.refresh_from_db()
    assert (exchange.code, exchange.name) == ("EXISTING", "Existing")
    assert Exchange.objects.count() == 1


def test_superuser_without_admin_role_may_write(django_user_model):
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    root = django_user_model.objects.create_user(email="root2@example.com", password="pw-x-12345", is_superuser=True)
    assert root.role == "user"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(root).access_token}")

    assert client.post("/exchange/", _payload(), format="json").status_code == 201
