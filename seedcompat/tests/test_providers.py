"""Contract of the seed's provider routes under /seed/: providers (credentials write-only) and
provider <-> instrument mappings."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from exchanges.services import exchange_create
from ingestion.models import Provider, ProviderInstrumentMapping
from ingestion.services import provider_create, provider_instrument_mapping_create
from instruments.models import Instrument, InstrumentType
from instruments.services import instrument_create

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-access-token-do-not-echo"
PROVIDER_KEYS = {
    "id",
    "name",
    "code",
    "kind",
    "credentials",
    "credentials_set",
    "rate_limit",
    "created_at",
    "updated_at",
    "is_active",
}
MAPPING_KEYS = {"provider_id", "instrument_id", "provider_instrument_search_code", "segment"}


def make_provider(code="DHAN", kind="dhan", **extra) -> Provider:
    return provider_create(name=f"{code} feed", code=code, kind=kind, **extra)


def make_instrument(symbol="RELIANCE") -> Instrument:
    exchange = exchange_create(
        name=f"NSE {symbol}",
        code=f"X{Instrument.objects.count()}",
        timezone="Asia/Kolkata",
        currency="INR",
        market_open=dt.time(9, 15),
        market_close=dt.time(15, 30),
    )
    equity, _ = InstrumentType.objects.get_or_create(code="EQ", defaults={"name": "Equity"})
    return instrument_create(symbol=symbol, exchange=exchange, instrument_type=equity)


def error_detail(response, code: int) -> str:
    assert response.status_code == code, response.content
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


def no_secret(response) -> None:
    assert SECRET not in response.content.decode(), "a credential value was echoed"


# --- permissions -----------------------------------------------------------------------------------


ROUTES = [
    ("get", "/seed/provider/"),
    ("post", "/seed/provider/"),
    ("get", "/seed/provider/1"),
    ("put", "/seed/provider/1"),
    ("delete", "/seed/provider/1"),
    ("post", "/seed/provider/mapping/"),
    ("put", "/seed/provider/mapping/"),
    ("get", "/seed/provider/mapping/instrument/1"),
]


def test_anonymous_gets_401(api_client):
    for method, path in ROUTES:
        error_detail(getattr(api_client, method)(path, {}, format="json"), 401)


def test_viewers_get_403_reads_too(user_api_client):
    # Providers reveal accounts and endpoints: admins only, as our own /providers/ (the seed's
    # front end calls these from admin pages only).
    make_provider(credentials={"access_token": SECRET})
    for method, path in ROUTES:
        response = getattr(user_api_client, method)(path, {}, format="json")
        error_detail(response, 403)
        no_secret(response)


# --- providers -------------------------------------------------------------------------------------


def test_list_is_a_bare_array_by_id_without_credentials(admin_api_client):
    dhan = make_provider(credentials={"client_id": "1000", "access_token": SECRET}, rate_limit=2.5)
    sim = make_provider("SIM", "simulated", is_active=False)

    response = admin_api_client.get("/seed/provider")

    assert response.status_code == 200
    no_secret(response)
    body = response.json()
    assert [row["id"] for row in body] == [dhan.pk, sim.pk]
    row = body[0]
    assert set(row) == PROVIDER_KEYS
    assert row["name"] == "DHAN feed" and row["code"] == "DHAN" and row["kind"] == "dhan"
    assert row["credentials"] is None and row["credentials_set"] is True
    assert row["rate_limit"] == 2.5 and row["is_active"] is True
    assert row["created_at"].endswith("Z") and row["updated_at"].endswith("Z")
    assert body[1]["is_active"] is False and body[1]["credentials_set"] is False


def test_create_takes_the_seed_form_stores_credentials_and_never_echoes_them(admin_api_client):
    form = {"name": "Dhan", "code": "dhan", "rate_limit": 0, "credentials": {"access_token": SECRET}}

    response = admin_api_client.post("/seed/provider/", form, format="json")

    assert response.status_code == 201, response.content
    no_secret(response)
    body = response.json()
    provider = Provider.objects.get(code="DHAN")
    assert set(body) == PROVIDER_KEYS
    assert body["id"] == provider.pk and body["kind"] == "dhan"
    assert body["credentials"] is None and body["credentials_set"] is True
    # 0 is the seed form's "empty": our default rate.
    assert body["rate_limit"] == provider.rate_limit == 5.0
    assert provider.credentials == {"access_token": SECRET}


def test_create_derives_the_kind_or_takes_it(admin_api_client):
    yahoo = admin_api_client.post("/seed/provider/", {"name": "Yahoo Finance", "code": "YAHOO2"}, format="json")
    assert yahoo.status_code == 201 and yahoo.json()["kind"] == "yahoo"
    replay = admin_api_client.post(
        "/seed/provider/", {"name": "Tape", "code": "TAPE", "kind": "replay", "rate_limit": 3}, format="json"
    )
    assert replay.status_code == 201 and replay.json()["kind"] == "replay" and replay.json()["rate_limit"] == 3.0
    assert "kind" in error_detail(
        admin_api_client.post("/seed/provider/", {"name": "Other", "code": "OTHER"}, format="json"), 400
    )


def test_create_refuses_bad_input_without_echoing_secrets(admin_api_client):
    make_provider()
    for form in [
        {"name": "Dhan again", "code": "dhan", "credentials": {"token": SECRET}},  # the code exists (any case)
        {"name": "Bad", "code": "SIM", "credentials": {"token": [SECRET]}},
        {"name": "Bad", "code": "SIM", "credentials": SECRET},
        {"name": "Bad", "code": "SIM", "rate_limit": -1, "credentials": {"token": SECRET}},
        {"name": "Bad", "code": "SIM", "kind": "fax"},
        {"name": "Bad", "code": "S" * 40},
        {"code": "SIM"},
    ]:
        response = admin_api_client.post("/seed/provider/", form, format="json")
        error_detail(response, 400)
        no_secret(response)
    assert Provider.objects.count() == 1


def test_get_one_provider_and_404(admin_api_client):
    provider = make_provider(credentials={"access_token": SECRET})
    response = admin_api_client.get(f"/seed/provider/{provider.pk}/")
    assert response.status_code == 200
    no_secret(response)
    assert set(response.json()) == PROVIDER_KEYS and response.json()["credentials"] is None
    assert error_detail(admin_api_client.get(f"/seed/provider/{provider.pk + 1000}"), 404) == "Provider not found"
    error_detail(admin_api_client.get("/seed/provider/99999999999999999999999"), 404)


def test_put_honours_is_active_and_keeps_credentials_sent_back_as_null(admin_api_client):
    provider = make_provider(credentials={"access_token": SECRET})
    # What the seed's update form sends back after loading the provider: credentials null.
    form = {"name": "Dhan HQ", "code": "DHAN", "rate_limit": 7, "credentials": None, "is_active": False}

    response = admin_api_client.put(f"/seed/provider/{provider.pk}", form, format="json")

    assert response.status_code == 200, response.content
    no_secret(response)
    body = response.json()
    assert body["name"] == "Dhan HQ" and body["rate_limit"] == 7.0 and body["is_active"] is False
    assert body["credentials"] is None and body["credentials_set"] is True
    provider.refresh_from_db()
    assert provider.is_active is False and provider.credentials == {"access_token": SECRET}

    # An object replaces them; {} clears them; a rate limit of 0 keeps the rate.
    body = admin_api_client.put(
        f"/seed/provider/{provider.pk}", {"credentials": {"access_token": "new"}, "rate_limit": 0}, format="json"
    ).json()
    provider.refresh_from_db()
    assert provider.credentials == {"access_token": "new"} and body["rate_limit"] == 7.0
    body = admin_api_client.put(f"/seed/provider/{provider.pk}", {"credentials": {}}, format="json").json()
    assert body["credentials_set"] is False


def test_put_refuses_bad_input_and_unknown_providers(admin_api_client):
    provider = make_provider()
    make_provider("SIM", "simulated")
    for form in [{"code": "sim"}, {"name": None}, {"is_active": "maybe"}, {"credentials": {"token": 5}}]:
        error_detail(admin_api_client.put(f"/seed/provider/{provider.pk}", form, format="json"), 400)
    error_detail(admin_api_client.put(f"/seed/provider/{provider.pk + 1000}", {"name": "X"}, format="json"), 404)


def test_delete_answers_a_message(admin_api_client):
    provider = make_provider()
    response = admin_api_client.delete(f"/seed/provider/{provider.pk}")
    assert response.status_code == 200
    assert response.json() == {"message": "Provider deleted successfully"}
    assert not Provider.objects.filter(pk=provider.pk).exists()
    error_detail(admin_api_client.delete(f"/seed/provider/{provider.pk}"), 404)


# --- provider <-> instrument mappings -------------------------------------------------------------------


def test_mappings_of_an_instrument_are_a_bare_array_by_id(admin_api_client):
    instrument, other = make_instrument(), make_instrument("TCS")
    yahoo, dhan = make_provider("YF", "yahoo"), make_provider()
    first = provider_instrument_mapping_create(
        provider=dhan, instrument=instrument, search_code="2885", segment="NSE_EQ"
    )
    provider_instrument_mapping_create(provider=yahoo, instrument=instrument, search_code="RELIANCE.NS")
    provider_instrument_mapping_create(provider=yahoo, instrument=other, search_code="TCS.NS")

    for path in (
        f"/seed/provider/mapping/instrument/{instrument.pk}",
        f"/seed/provider/mapping/instrument/{instrument.pk}/",
    ):
        response = admin_api_client.get(path)
        assert response.status_code == 200
        assert response.json() == [
            {
                "provider_id": dhan.pk,
                "instrument_id": instrument.pk,
                "provider_instrument_search_code": "2885",
                "segment": "NSE_EQ",
            },
            {
                "provider_id": yahoo.pk,
                "instrument_id": instrument.pk,
                "provider_instrument_search_code": "RELIANCE.NS",
                "segment": "",
            },
        ]
    assert first.pk < ProviderInstrumentMapping.objects.filter(provider=yahoo, instrument=instrument).get().pk
    assert admin_api_client.get(f"/seed/provider/mapping/instrument/{make_instrument('INFY').pk}").json() == []
    error_detail(admin_api_client.get(f"/seed/provider/mapping/instrument/{instrument.pk + 1000}"), 404)


def test_create_a_mapping(admin_api_client):
    instrument = make_instrument()
    provider = make_provider("YF", "yahoo")
    form = {
        "provider_id": provider.pk,
        "provider_instrument_search_code": "RELIANCE.NS",
        "instrument_id": instrument.pk,
    }

    response = admin_api_client.post("/seed/provider/mapping/", form, format="json")

    assert response.status_code == 201, response.content
    assert set(response.json()) == MAPPING_KEYS
    assert response.json() == {**form, "segment": ""}
    mapping = ProviderInstrumentMapping.objects.get(provider=provider, instrument=instrument)
    assert mapping.search_code == "RELIANCE.NS"

    # Our optional segment (Dhan's exchange segment) is taken too.
    dhan = make_provider()
    body = admin_api_client.post(
        "/seed/provider/mapping",
        {**form, "provider_id": dhan.pk, "provider_instrument_search_code": "2885", "segment": "nse_eq"},
        format="json",
    ).json()
    assert body["segment"] == "NSE_EQ"


def test_create_mapping_refuses_duplicates_bad_input_and_unknown_ids(admin_api_client):
    instrument = make_instrument()
    provider = make_provider("YF", "yahoo")
    provider_instrument_mapping_create(provider=provider, instrument=instrument, search_code="RELIANCE.NS")
    form = {"provider_id": provider.pk, "provider_instrument_search_code": "REL.NS", "instrument_id": instrument.pk}
    for body in [
        form,  # the pair exists
        {**form, "provider_instrument_search_code": ""},
        {**form, "provider_instrument_search_code": "X" * 65},
        {key: value for key, value in form.items() if key != "instrument_id"},
        {**form, "provider_id": "YF"},
    ]:
        error_detail(admin_api_client.post("/seed/provider/mapping/", body, format="json"), 400)
    assert error_detail(
        admin_api_client.post("/seed/provider/mapping/", {**form, "provider_id": provider.pk + 1000}, format="json"),
        404,
    ) == ("Provider not found")
    assert error_detail(
        admin_api_client.post(
            "/seed/provider/mapping/", {**form, "instrument_id": instrument.pk + 1000}, format="json"
        ),
        404,
    ) == ("Instrument not found")
    assert ProviderInstrumentMapping.objects.count() == 1


def test_update_a_mapping_selected_by_the_pair(admin_api_client):
    instrument = make_instrument()
    provider = make_provider("YF", "yahoo")
    mapping = provider_instrument_mapping_create(provider=provider, instrument=instrument, search_code="RELIANCE.NS")
    form = {
        "provider_id": provider.pk,
        "provider_instrument_search_code": "RELIANCE.BO",
        "instrument_id": instrument.pk,
    }

    response = admin_api_client.put("/seed/provider/mapping/", form, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {**form, "segment": ""}
    mapping.refresh_from_db()
    assert mapping.search_code == "RELIANCE.BO"

    missing = admin_api_client.put("/seed/provider/mapping", {**form, "provider_id": make_provider().pk}, format="json")
    assert error_detail(missing, 404) == "Provider-Instrument mapping not found"
    error_detail(
        admin_api_client.put(
            "/seed/provider/mapping", {**form, "provider_instrument_search_code": None}, format="json"
        ),
        400,
    )
    error_detail(
        admin_api_client.put("/seed/provider/mapping", json.dumps([form]), content_type="application/json"), 400
    )
