"""The seed service's request bodies: its hour names are accepted (and answered), unknown fields refused."""

from __future__ import annotations

import datetime as dt

import pytest

from exchanges.models import Exchange
from exchanges.tests.factories import ExchangeFactory

pytestmark = pytest.mark.django_db

ALIASES = {
    "pre_market_open_time": "pre_market_open",
    "market_open_time": "market_open",
    "market_close_time": "market_close",
    "post_market_close_time": "post_market_close",
}


def _seed_body(**overrides) -> dict:
    """The seed README's "Create Exchange" body: the same keys, our own exchange."""
    body = {
        "name": "Chicago Board Options Exchange",
        "code": "CBOE",
        "timezone": "America/Chicago",
        "country": "USA",
        "currency": "USD",
        "market_open_time": "08:30:00",
        "market_close_time": "15:00:00",
    }
    body.update(overrides)
    return body


def _assert_error(response, status_code: int) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_the_seed_readme_body_creates_the_exchange(admin_api_client):
    response = admin_api_client.post("/exchange/", _seed_body(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["market_open"], body["market_close"]) == ("08:30:00", "15:00:00")
    assert (body["market_open_time"], body["market_close_time"]) == ("08:30:00", "15:00:00")
    assert body["pre_market_open"] is None and body["pre_market_open_time"] is None
    exchange = Exchange.objects.get(code="CBOE")
    assert (exchange.market_open, exchange.market_close) == (dt.time(8, 30), dt.time(15, 0))


def test_all_four_seed_names_are_accepted_without_seconds(admin_api_client):
    body = _seed_body(pre_market_open_time="07:00", post_market_close_time="16:15")

    response = admin_api_client.post("/exchange", body, format="json")

    assert response.status_code == 201, response.content
    exchange = Exchange.objects.get(code="CBOE")
    assert (exchange.pre_market_open, exchange.post_market_close) == (dt.time(7, 0), dt.time(16, 15))
    for alias, name in ALIASES.items():
        assert response.json()[alias] == response.json()[name]


def test_both_names_with_the_same_time_are_fine(admin_api_client):
    response = admin_api_client.post("/exchange/", _seed_body(market_open="08:30"), format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("alias", list(ALIASES))
def test_both_names_with_different_times_are_a_400_naming_the_alias(admin_api_client, alias):
    body = _seed_body(**{ALIASES[alias]: "08:00:00", alias: "08:45:00"})

    body = _assert_error(admin_api_client.post("/exchange/", body, format="json"), 400)

    assert list(body["errors"]) == [alias]
    assert ALIASES[alias] in body["errors"][alias][0]
    assert not Exchange.objects.exists()


def test_unknown_fields_are_a_400_naming_them(admin_api_client):
    body = _seed_body(market_opening="09:00", id=7)

    body = _assert_error(admin_api_client.post("/exchange/", body, format="json"), 400)

    assert set(body["errors"]) == {"market_opening", "id"}
    assert "market_opening" in body["detail"]
    assert not Exchange.objects.exists()


def test_patch_with_a_seed_name_changes_that_hour_only(admin_api_client):
    exchange = ExchangeFactory(market_open=dt.time(9, 30), market_close=dt.time(16, 0))

    response = admin_api_client.patch(f"/exchange/{exchange.pk}", {"market_close_time": "13:00"}, format="json")

    assert response.status_code == 200, response.content
    exchange.refresh_from_db()
    assert (exchange.market_open, exchange.market_close) == (dt.time(9, 30), dt.time(13, 0))
    assert response.json()["market_close_time"] == "13:00:00"


def test_patch_with_unknown_field_is_a_400_and_changes_nothing(admin_api_client):
    exchange = ExchangeFactory(name="Kept")

    body = _assert_error(
        admin_api_client.patch(f"/exchange/{exchange.pk}", {"name": "New", "colour": "red"}, format="json"), 400
    )

    assert list(body["errors"]) == ["colour"]
    exchange.refresh_from_db()
    assert exchange.name == "Kept"


def test_put_with_seed_names_replaces_the_hours(admin_api_client):
    exchange = ExchangeFactory(pre_market_open=dt.time(4, 0))

    response = admin_api_client.put(f"/exchange/{exchange.pk}", _seed_body(), format="json")

    assert response.status_code == 200, response.content
    exchange.refresh_from_db()
    assert exchange.pre_market_open is None  # PUT clears an hour sent under neither name
    assert exchange.market_open == dt.time(8, 30)


def test_a_bad_time_under_a_seed_name_is_a_400(admin_api_client):
    body = _assert_error(admin_api_client.post("/exchange/", _seed_body(market_open_time="9.30"), format="json"), 400)
    assert list(body["errors"]) == ["market_open_time"]


def test_reads_answer_both_names(user_api_client):
    exchange = ExchangeFactory(market_open=dt.time(9, 30), market_close=dt.time(16, 0))

    row = user_api_client.get(f"/exchange/{exchange.pk}").json()

    assert (row["market_open_time"], row["market_close_time"]) == ("09:30:00", "16:00:00")
    assert row["post_market_close_time"] is None
