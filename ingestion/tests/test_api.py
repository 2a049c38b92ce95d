"""REST API of providers and mappings: /providers/, /providers/{id}/instruments, /exchange/{id}/providers."""

from __future__ import annotations

import json

import pytest

from exchanges.tests.factories import ExchangeFactory
from ingestion.models import ExchangeProviderMapping, Provider, ProviderInstrumentMapping
from ingestion.tests.factories import (
    ExchangeProviderMappingFactory,
    ProviderFactory,
    ProviderInstrumentMappingFactory,
)
from instruments.tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-access-token-value"


def _assert_error(response, status_code: int) -> dict:
    assert response.status_code == status_code, response.content
    body = response.json()
    assert body["status_code"] == status_code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def _provider_payload(**overrides) -> dict:
    payload = {
        "name": "Dhan",
        "code": "dhan",
        "kind": "dhan",
        "settings": {"mode": "full"},
        "credentials": {"client_id": "1000000001", "access_token": SECRET},
        "rate_limit": 5,
    }
    payload.update(overrides)
    return payload


# --- providers ---------------------------------------------------------------------------------


def test_create_provider_stores_credentials_but_never_shows_them(admin_api_client):
    response = admin_api_client.post("/providers/", _provider_payload(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code"] == "DHAN"
    assert body["credentials_set"] is True
    assert "credentials" not in body
    assert SECRET not in response.content.decode()
    assert body["settings"] == {"mode": "full"}
    # The kind's defaults fill in what the row does not set.
    assert body["effective_settings"]["mode"] == "full"
    assert body["effective_settings"]["rest_url"] == "https://api.dhan.co/v2"
    provider = Provider.objects.get(pk=body["id"])
    assert provider.credentials == {"client_id": "1000000001", "access_token": SECRET}


def test_credentials_never_appear_in_any_provider_response(admin_api_client):
    created = admin_api_client.post("/providers", _provider_payload(), format="json")
    pk = created.json()["id"]
    responses = [
        created,
        admin_api_client.get("/providers/"),
        admin_api_client.get(f"/providers/{pk}"),
        admin_api_client.patch(f"/providers/{pk}", {"name": "Dhan HQ"}, format="json"),
        admin_api_client.put(f"/providers/{pk}/", _provider_payload(name="Dhan again"), format="json"),
        admin_api_client.patch(f"/providers/{pk}", {"credentials": {"access_token": 5}}, format="json"),
        admin_api_client.post("/providers/", _provider_payload(), format="json"),
        admin_api_client.get("/providers/?format=api"),
    ]
    for response in responses:
        assert response.status_code < 500
        assert SECRET not in response.content.decode()
        assert "1000000001" not in response.content.decode()


def test_list_and_retrieve_providers(admin_api_client):
    ProviderFactory(code="YF", name="Yahoo", kind="yahoo")
    sim = ProviderFactory(code="SIM", name="Simulator")

    listed = admin_api_client.get("/providers/")
    single = admin_api_client.get(f"/providers/{sim.pk}/")

    assert listed.status_code == 200
    assert [row["code"] for row in listed.json()["results"]] == ["SIM", "YF"]
    assert single.status_code == 200
    assert single.json()["credentials_set"] is False
    assert single.json()["effective_settings"]["tick_interval_ms"] == 250


def test_patch_settings_replaces_them_and_keeps_credentials(admin_api_client, settings):
    settings.PROVIDER_URL_ALLOWED_HOSTS = ["127.0.0.1:9999"]  # a local feed, allowed by the deployment
    provider = ProviderFactory(kind="yahoo", settings={"resubscribe_s": 30}, credentials={"token": SECRET})

    response = admin_api_client.patch(
        f"/providers/{provider.pk}", {"settings": {"feed_url": "ws://127.0.0.1:9999/"}}, format="json"
    )

    assert response.status_code == 200, response.content
    provider.refresh_from_db()
    assert provider.settings == {"feed_url": "ws://127.0.0.1:9999/"}
    assert provider.credentials == {"token": SECRET}
    assert response.json()["effective_settings"]["resubscribe_s"] == 15


def test_patch_credentials_replaces_and_clears(admin_api_client):
    provider = ProviderFactory(credentials={"token": "old", "client_id": "1"})

    admin_api_client.patch(f"/providers/{provider.pk}", {"credentials": {"token": "new"}}, format="json")
    provider.refresh_from_db()
    assert provider.credentials == {"token": "new"}

    response = admin_api_client.patch(f"/providers/{provider.pk}", {"credentials": {}}, format="json")
    assert response.json()["credentials_set"] is False
    provider.refresh_from_db()
    assert provider.credentials == {}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"settings": ["a", "b"]}, "settings"),
        ({"settings": "mode=full"}, "settings"),
        ({"settings": 3}, "settings"),
        ({"settings": None}, "settings"),
        ({"settings": {"feed_url": "ws://x\u0000"}}, "settings"),
        ({"settings": {"nested": [{"k\u0000": 1}]}}, "settings"),
        ({"credentials": {"token": "a\u0000b"}}, "credentials.token"),
        ({"credentials": "token"}, "credentials"),
        ({"credentials": ["token"]}, "credentials"),
        ({"credentials": {"token": 123}}, "credentials.token"),
        ({"credentials": {"token": {"nested": "x"}}}, "credentials.token"),
        ({"credentials": {"token": None}}, "credentials.token"),
        ({"kind": "bloomberg"}, "kind"),
        ({"code": ""}, "code"),
        ({"code": "X" * 17}, "code"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"is_active": "maybe"}, "is_active"),
    ],
)
def test_create_provider_rejects_invalid_values(admin_api_client, overrides, field):
    body = _assert_error(admin_api_client.post("/providers/", _provider_payload(**overrides), format="json"), 400)

    assert field in body["errors"], body
    assert not Provider.objects.exists()


@pytest.mark.parametrize("code", ["DHAN", "dhan", " Dhan"])
def test_duplicate_provider_code_is_400(admin_api_client, code):
    ProviderFactory(code="DHAN")

    body = _assert_error(admin_api_client.post("/providers/", _provider_payload(code=code), format="json"), 400)

    assert "code" in body["errors"]
    assert Provider.objects.count() == 1


def test_patch_provider_to_a_taken_code_is_400(admin_api_client):
    ProviderFactory(code="YF")
    provider = ProviderFactory(code="SIM")

    body = _assert_error(admin_api_client.patch(f"/providers/{provider.pk}", {"code": "yf"}, format="json"), 400)

    assert "code" in body["errors"]


def test_patch_provider_rejects_non_object_settings(admin_api_client):
    provider = ProviderFactory(settings={"seed": 1})

    body = _assert_error(admin_api_client.patch(f"/providers/{provider.pk}", {"settings": [1]}, format="json"), 400)

    assert "settings" in body["errors"]
    provider.refresh_from_db()
    assert provider.settings == {"seed": 1}


def test_delete_provider_takes_its_mappings(admin_api_client):
    provider = ProviderFactory()
    ExchangeProviderMappingFactory(provider=provider)
    ProviderInstrumentMappingFactory(provider=provider)

    assert admin_api_client.delete(f"/providers/{provider.pk}").status_code == 204
    assert not Provider.objects.exists()
    assert not ExchangeProviderMapping.objects.exists()
    assert not ProviderInstrumentMapping.objects.exists()


@pytest.mark.parametrize("path", ["/providers/424242", "/providers/abc", "/providers/424242/instruments"])
def test_unknown_provider_is_404(admin_api_client, path):
    _assert_error(admin_api_client.get(path), 404)


def test_mapping_for_an_unknown_provider_is_404_before_the_body_is_read(admin_api_client):
    _assert_error(admin_api_client.post("/providers/424242/instruments", {}, format="json"), 404)


@pytest.mark.parametrize("query", ["limit=5000", "offset=-2", "limit=x"])
def test_provider_list_rejects_bad_paging(admin_api_client, query):
    _assert_error(admin_api_client.get(f"/providers/?{query}"), 400)


# --- provider reads are admin-only ---------------------------------------------------------------

READS = {
    "list": lambda p: "/providers/",
    "retrieve": lambda p: f"/providers/{p.pk}",
    "instrument mappings": lambda p: f"/providers/{p.pk}/instruments",
    "instrument mapping": lambda p: f"/providers/{p.pk}/instruments/{p.instrument_mappings.get().pk}",
}


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize(
    ("client_fixture", "expected"),
    [("api_client", 401), ("user_api_client", 403), ("admin_api_client", 200)],
)
def test_provider_read_authorization(request, read, client_fixture, expected):
    provider = ProviderFactory(credentials={"token": SECRET})
    ProviderInstrumentMappingFactory(provider=provider)
    client = request.getfixturevalue(client_fixture)

    response = client.get(READS[read](provider))

    assert response.status_code == expected, response.content
    assert response.json().get("status_code", 200) == expected
    assert SECRET not in response.content.decode()


# --- /exchange/{id}/providers ------------------------------------------------------------------


def test_exchange_providers_are_listed_primary_first(user_api_client):
    exchange = ExchangeFactory()
    ExchangeProviderMappingFactory(exchange=exchange, provider=ProviderFactory(code="YF", name="Yahoo"), priority=20)
    ExchangeProviderMappingFactory(exchange=exchange, provider=ProviderFactory(code="SIM"), priority=10)
    ExchangeProviderMappingFactory(exchange=exchange, provider=ProviderFactory(code="DHAN"), is_primary=True)
    ExchangeProviderMappingFactory()  # another exchange's

    response = user_api_client.get(f"/exchange/{exchange.pk}/providers")

    assert response.status_code == 200, response.content
    rows = response.json()
    assert [(row["provider"]["code"], row["is_primary"], row["priority"]) for row in rows] == [
        ("DHAN", True, 100),
        ("SIM", False, 10),
        ("YF", False, 20),
    ]
    assert rows[2]["provider"]["name"] == "Yahoo"


def test_add_exchange_provider_by_code_or_id(admin_api_client):
    exchange = ExchangeFactory()
    dhan = ProviderFactory(code="DHAN")
    yahoo = ProviderFactory(code="YF")

    by_code = admin_api_client.post(
        f"/exchange/{exchange.pk}/providers/", {"provider": "dhan", "is_primary": True, "priority": 1}, format="json"
    )
    by_id = admin_api_client.post(f"/exchange/{exchange.pk}/providers", {"provider": yahoo.pk}, format="json")

    assert by_code.status_code == 201, by_code.content
    assert by_id.status_code == 201, by_id.content
    assert by_code.json()["provider"]["code"] == "DHAN"
    assert by_code.json()["exchange"] == exchange.pk
    mappings = {m.provider: m for m in ExchangeProviderMapping.objects.filter(exchange=exchange)}
    assert (mappings[dhan].is_primary, mappings[dhan].priority) == (True, 1)
    assert (mappings[yahoo].is_primary, mappings[yahoo].priority) == (False, 100)


def test_new_primary_demotes_the_old_one(admin_api_client):
    exchange = ExchangeFactory()
    old = ExchangeProviderMappingFactory(exchange=exchange, is_primary=True)
    other = ExchangeProviderMappingFactory(exchange=exchange)
    elsewhere = ExchangeProviderMappingFactory(is_primary=True)

    created = admin_api_client.post(
        f"/exchange/{exchange.pk}/providers", {"provider": ProviderFactory().pk, "is_primary": True}, format="json"
    )
    assert created.status_code == 201, created.content
    old.refresh_from_db()
    assert old.is_primary is False

    patched = admin_api_client.patch(
        f"/exchange/{exchange.pk}/providers/{other.pk}", {"is_primary": True}, format="json"
    )
    assert patched.status_code == 200, patched.content
    primaries = list(ExchangeProviderMapping.objects.filter(exchange=exchange, is_primary=True))
    assert primaries == [other]
    elsewhere.refresh_from_db()
    assert elsewhere.is_primary is True


def test_put_and_delete_exchange_provider(admin_api_client):
    mapping = ExchangeProviderMappingFactory(priority=5, is_primary=True)
    url = f"/exchange/{mapping.exchange_id}/providers/{mapping.pk}"

    replaced = admin_api_client.put(url, {"provider": mapping.provider.code}, format="json")
    assert replaced.status_code == 200, replaced.content
    mapping.refresh_from_db()
    assert (mapping.priority, mapping.is_primary) == (100, False)

    assert admin_api_client.delete(url + "/").status_code == 204
    assert not ExchangeProviderMapping.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"provider": "NOPE"}, "provider"),
        ({"provider": 424242}, "provider"),
        ({"provider": None}, "provider"),
        ({"provider": {"code": "YF"}}, "provider"),
        ({"provider": "Y\u0000F"}, "provider"),
        ({"provider": "YF", "priority": -1}, "priority"),
        ({"provider": "YF", "priority": 40000}, "priority"),
        ({"provider": "YF", "priority": "high"}, "priority"),
        ({"provider": "YF", "is_primary": "perhaps"}, "is_primary"),
        ({}, "provider"),
    ],
)
def test_add_exchange_provider_rejects_invalid_values(admin_api_client, payload, field):
    exchange = ExchangeFactory()
    ProviderFactory(code="YF")

    body = _assert_error(admin_api_client.post(f"/exchange/{exchange.pk}/providers", payload, format="json"), 400)

    assert field in body["errors"], body
    assert not ExchangeProviderMapping.objects.exists()


def test_adding_the_same_provider_twice_is_400(admin_api_client):
    mapping = ExchangeProviderMappingFactory()

    body = _assert_error(
        admin_api_client.post(
            f"/exchange/{mapping.exchange_id}/providers", {"provider": mapping.provider_id}, format="json"
        ),
        400,
    )

    assert "provider" in body["errors"]
    assert ExchangeProviderMapping.objects.count() == 1


def test_patch_to_a_provider_already_serving_the_exchange_is_400(admin_api_client):
    first = ExchangeProviderMappingFactory()
    second = ExchangeProviderMappingFactory(exchange=first.exchange)

    body = _assert_error(
        admin_api_client.patch(
            f"/exchange/{first.exchange_id}/providers/{second.pk}", {"provider": first.provider_id}, format="json"
        ),
        400,
    )
    assert "provider" in body["errors"]


@pytest.mark.parametrize(
    "path",
    [
        "/exchange/424242/providers",
        "/exchange/{exchange}/providers/424242",
        "/exchange/{other}/providers/{mapping}",
    ],
)
def test_unknown_exchange_or_mapping_is_404(admin_api_client, path):
    mapping = ExchangeProviderMappingFactory()
    other = ExchangeFactory()
    url = path.format(exchange=mapping.exchange_id, other=other.pk, mapping=mapping.pk)

    write = admin_api_client.post if url.endswith("providers") else admin_api_client.patch

    _assert_error(admin_api_client.get(url), 404)
    _assert_error(write(url, {"priority": 1}, format="json"), 404)


def test_exchange_providers_need_authentication(api_client):
    exchange = ExchangeFactory()
    _assert_error(api_client.get(f"/exchange/{exchange.pk}/providers"), 401)


# --- /providers/{id}/instruments -----------------------------------------------------------------


def test_provider_instrument_mappings_crud(admin_api_client):
    provider = ProviderFactory(code="DHAN")
    instrument = InstrumentFactory(symbol="RELIANCE", exchange=ExchangeFactory(code="NSE"))
    ProviderInstrumentMappingFactory()  # another provider's

    created = admin_api_client.post(
        f"/providers/{provider.pk}/instruments",
        {"instrument": instrument.pk, "search_code": "2885", "segment": "nse_eq"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["instrument"] == {"id": instrument.pk, "symbol": "RELIANCE", "exchange": "NSE"}
    assert (body["provider"], body["search_code"], body["segment"]) == ("DHAN", "2885", "NSE_EQ")

    listed = admin_api_client.get(f"/providers/{provider.pk}/instruments/")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [body["id"]]

    url = f"/providers/{provider.pk}/instruments/{body['id']}"
    patched = admin_api_client.patch(url, {"search_code": "2886"}, format="json")
    assert patched.status_code == 200, patched.content
    assert ProviderInstrumentMapping.objects.get(pk=body["id"]).search_code == "2886"

    replaced = admin_api_client.put(url, {"instrument": instrument.pk, "search_code": "RELIANCE.NS"}, format="json")
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["segment"] == ""

    assert admin_api_client.delete(url).status_code == 204
    assert not ProviderInstrumentMapping.objects.filter(provider=provider).exists()


def test_instrument_mapping_shows_on_the_instrument(admin_api_client):
    provider = ProviderFactory(code="YF")
    instrument = InstrumentFactory()
    admin_api_client.post(
        f"/providers/{provider.pk}/instruments", {"instrument": instrument.pk, "search_code": "X.NS"}, format="json"
    )

    mappings = admin_api_client.get(f"/instruments/{instrument.pk}").json()["provider_mappings"]

    assert [(m["provider"], m["search_code"]) for m in mappings] == [("YF", "X.NS")]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"instrument": 424242, "search_code": "1"}, "instrument"),
        ({"instrument": "abc", "search_code": "1"}, "instrument"),
        ({"instrument": "{instrument}", "search_code": ""}, "search_code"),
        ({"instrument": "{instrument}", "search_code": "X" * 65}, "search_code"),
        ({"instrument": "{instrument}", "search_code": "1", "segment": "S" * 17}, "segment"),
        ({"instrument": "{instrument}"}, "search_code"),
        # unique (provider, instrument)
        ({"instrument": "{mapped}", "search_code": "9999"}, "instrument"),
        # unique (provider, segment, search_code)
        ({"instrument": "{instrument}", "search_code": "2885", "segment": "NSE_EQ"}, "search_code"),
    ],
)
def test_instrument_mapping_rejects_invalid_values(admin_api_client, payload, field):
    provider = ProviderFactory()
    existing = ProviderInstrumentMappingFactory(provider=provider, search_code="2885", segment="NSE_EQ")
    instrument = InstrumentFactory()
    ids = {"{instrument}": instrument.pk, "{mapped}": existing.instrument_id}
    payload = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}

    body = _assert_error(admin_api_client.post(f"/providers/{provider.pk}/instruments", payload, format="json"), 400)

    assert field in body["errors"], body
    assert ProviderInstrumentMapping.objects.count() == 1


def test_instrument_mapping_of_another_provider_is_404(admin_api_client):
    mapping = ProviderInstrumentMappingFactory()
    other = ProviderFactory()

    _assert_error(admin_api_client.get(f"/providers/{other.pk}/instruments/{mapping.pk}"), 404)
    _assert_error(admin_api_client.delete(f"/providers/{other.pk}/instruments/{mapping.pk}"), 404)
    assert ProviderInstrumentMapping.objects.filter(pk=mapping.pk).exists()


# --- who may write -----------------------------------------------------------------------------


def _world():
    exchange = ExchangeFactory()
    provider = ProviderFactory(code="EXISTING", credentials={"token": SECRET})
    spare = ProviderFactory(code="SPARE")
    exchange_mapping = ExchangeProviderMappingFactory(exchange=exchange, provider=provider)
    instrument_mapping = ProviderInstrumentMappingFactory(provider=provider, search_code="111")
    return {
        "exchange": exchange,
        "provider": provider,
        "spare": spare,
        "exchange_mapping": exchange_mapping,
        "instrument_mapping": instrument_mapping,
        "instrument": InstrumentFactory(),
    }


def _state() -> str:
    """Everything the writes could touch, to prove a refused write changed nothing."""
    rows = [
        list(Provider.objects.order_by("pk").values("pk", "code", "name", "settings")),
        list(ExchangeProviderMapping.objects.order_by("pk").values("pk", "provider", "priority", "is_primary")),
        list(ProviderInstrumentMapping.objects.order_by("pk").values("pk", "instrument", "search_code")),
    ]
    return json.dumps(rows, default=str)


WRITES = {
    "provider create": ("post", lambda w: "/providers/", lambda w: _provider_payload(code="NEW"), 201),
    "provider put": ("put", lambda w: f"/providers/{w['provider'].pk}", lambda w: _provider_payload(code="NEW"), 200),
    "provider patch": ("patch", lambda w: f"/providers/{w['provider'].pk}", lambda w: {"name": "Renamed"}, 200),
    "provider delete": ("delete", lambda w: f"/providers/{w['provider'].pk}", lambda w: None, 204),
    "exchange provider add": (
        "post",
        lambda w: f"/exchange/{w['exchange'].pk}/providers",
        lambda w: {"provider": "SPARE", "is_primary": True},
        201,
    ),
    "exchange provider put": (
        "put",
        lambda w: f"/exchange/{w['exchange'].pk}/providers/{w['exchange_mapping'].pk}",
        lambda w: {"provider": "EXISTING", "priority": 1},
        200,
    ),
    "exchange provider patch": (
        "patch",
        lambda w: f"/exchange/{w['exchange'].pk}/providers/{w['exchange_mapping'].pk}",
        lambda w: {"is_primary": True},
        200,
    ),
    "exchange provider delete": (
        "delete",
        lambda w: f"/exchange/{w['exchange'].pk}/providers/{w['exchange_mapping'].pk}",
        lambda w: None,
        204,
    ),
    "instrument mapping add": (
        "post",
        lambda w: f"/providers/{w['provider'].pk}/instruments",
        lambda w: {"instrument": w["instrument"].pk, "search_code": "222"},
        201,
    ),
    "instrument mapping put": (
        "put",
        lambda w: f"/providers/{w['provider'].pk}/instruments/{w['instrument_mapping'].pk}",
        lambda w: {"instrument": w["instrument"].pk, "search_code": "333"},
        200,
    ),
    "instrument mapping patch": (
        "patch",
        lambda w: f"/providers/{w['provider'].pk}/instruments/{w['instrument_mapping'].pk}",
        lambda w: {"search_code": "444"},
        200,
    ),
    "instrument mapping delete": (
        "delete",
        lambda w: f"/providers/{w['provider'].pk}/instruments/{w['instrument_mapping'].pk}",
        lambda w: None,
        204,
    ),
}


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize(
    ("client_fixture", "expected"),
    [("api_client", 401), ("user_api_client", 403), ("admin_api_client", None)],
)
def test_write_authorization(request, operation, client_fixture, expected):
    method, path, payload, admin_status = WRITES[operation]
    client = request.getfixturevalue(client_fixture)
    world = _world()
    before = _state()

    response = getattr(client, method)(path(world), payload(world), format="json")

    assert SECRET not in response.content.decode()
    if expected is None:
        assert response.status_code == admin_status, response.content
        assert _state() != before
        return
    _assert_error(response, expected)
    assert _state() == before


# --- unknown body fields are refused, never dropped ---------------------------------------------
def test_unknown_fields_are_a_400_naming_them(admin_api_client):
    provider = ProviderFactory(settings={"seed": 1})
    exchange = ExchangeFactory()

    created = admin_api_client.post("/providers/", _provider_payload(colour="blue", api_key="x"), format="json")
    body = _assert_error(created, 400)
    assert set(body["errors"]) == {"colour", "api_key"}

    patched = admin_api_client.patch(f"/providers/{provider.pk}", {"is_active": False, "bogus": 1}, format="json")
    assert set(_assert_error(patched, 400)["errors"]) == {"bogus"}
    provider.refresh_from_db()
    assert provider.is_active  # nothing of a refused body is written

    mapping = admin_api_client.post(
        f"/exchange/{exchange.pk}/providers/", {"provider": provider.pk, "primary": True}, format="json"
    )
    assert "primary" in _assert_error(mapping, 400)["errors"]

    history = admin_api_client.post("/populate/history/", {"symbols": ["AAPL"], "when": "now"}, format="json")
    assert "when" in _assert_error(history, 400)["errors"]
